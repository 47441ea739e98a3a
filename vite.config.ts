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
  build: {
    outDir: path.join(root, "dist", "renderer"),
    emptyOutDir: true,
    // one JS and one CSS file, no inline scripts: the strict CSP (script-src 'self') allows them
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 2000,
  },
});
