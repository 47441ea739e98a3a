/**
 * Bundles the Electron app into dist/electron:
 *   - main.js (ESM): the main process, the thin shell;
 *   - engineHost.js (ESM): the engine, run in Electron's utility process;
 *   - preload.cjs (CommonJS: sandboxed preloads cannot be ES modules);
 *   - trained/: the repo's trained routers. router/learnedRouter.ts looks for them beside the module
 *     that holds defaultRouterDir(), which bundling moves to this folder (as for router/trained in the repo).
 * node-llama-cpp and other packages stay in node_modules (unpacked from asar where native). No source
 * maps: the packaged app ships none. The renderer is built by Vite (npm run build:renderer).
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ROUTER_FILE_SUFFIX } from "../router/file.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export async function buildElectron(out: string = path.join(root, "dist", "electron")): Promise<string> {
  const common = { bundle: true, platform: "node", target: "node22", logLevel: "warning", sourcemap: false } as const;
  for (const name of ["main", "engineHost"]) {
    await build({
      ...common,
      entryPoints: [path.join(root, "electron", `${name}.ts`)],
      outfile: path.join(out, `${name}.js`),
      format: "esm",
      packages: "external",
    });
  }
  await build({
    ...common,
    entryPoints: [path.join(root, "electron", "preload.ts")],
    outfile: path.join(out, "preload.cjs"),
    format: "cjs",
    external: ["electron"],
  });
  copyTrainedRouters(path.join(root, "router", "trained"), path.join(out, "trained"));
  return out;
}

function copyTrainedRouters(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from).filter((f) => f.endsWith(ROUTER_FILE_SUFFIX))) copyFileSync(path.join(from, f), path.join(to, f));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(`built ${await buildElectron()}`);
}
