/**
 * Bundles the Electron shell: dist/electron/main.js (ESM, node-llama-cpp and other packages stay in
 * node_modules, unpacked from asar where native) and dist/electron/preload.cjs (CommonJS: sandboxed
 * preloads cannot be ES modules). The renderer is built by Vite (npm run build:renderer).
 */
import { build } from "esbuild";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(root, "dist", "electron");

await build({
  entryPoints: [path.join(root, "electron", "main.ts")],
  outfile: path.join(out, "main.js"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
});
await build({
  entryPoints: [path.join(root, "electron", "preload.ts")],
  outfile: path.join(out, "preload.cjs"),
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node22",
  external: ["electron"],
  logLevel: "warning",
});
console.log(`built ${out}`);
