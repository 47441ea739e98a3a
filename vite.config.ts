/** Builds the renderer (browser mode and the Electron window load the same files). */
import react from "@vitejs/plugin-react";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: path.join(root, "renderer"),
  base: "./", // relative URLs: works from file:// in Electron and from the web host
  plugins: [react()],
  resolve: {
    alias: {
      // rehype-katex parses KaTeX's HTML; the package's browser build does it through the DOM, where the
      // CSP (style-src 'self') refuses every inline style KaTeX writes, one console error each. Its
      // default build parses in JavaScript (parse5): the same tree, no DOM, no CSP report.
      "hast-util-from-html-isomorphic": path.join(root, "node_modules", "hast-util-from-html-isomorphic", "index.js"),
    },
  },
  build: {
    outDir: path.join(root, "dist", "renderer"),
    emptyOutDir: true,
    // one JS and one CSS file, no inline scripts: the strict CSP (script-src 'self') allows them
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 2000,
    // no data: URLs for small assets (KaTeX's fonts): the CSP allows fonts and images from 'self' only
    assetsInlineLimit: 0,
  },
});
