/**
 * `npm start`: launches the Electron app where the Electron binary is installed (a developer's Mac);
 * elsewhere explains browser mode. Electron >= 42 installs from npm without its binary, and
 * require("electron") in plain Node would try to download it: look for the binary instead.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export function electronBinary(): string | null {
  const dir = path.join(root, "node_modules", "electron");
  const pathFile = path.join(dir, "path.txt");
  if (!existsSync(pathFile)) return null;
  const bin = path.join(dir, "dist", readFileSync(pathFile, "utf8").trim());
  return existsSync(bin) ? bin : null;
}

const bin = electronBinary();
if (!bin) {
  console.log(`The Electron binary is not installed on this machine (node_modules/electron/dist is empty).

  Browser mode runs the same app in your browser:   npm run web
  then open the printed http://127.0.0.1:… URL.

  To run the desktop app, install Electron's binary (on a Mac: npx install-electron, or
  node node_modules/electron/install.js), then npm start again.`);
  process.exit(1);
}
// Electron on the project folder (package.json's main and productName), not on a file: the app is
// "Tandem" as when packaged, and uses the same data folder (main.ts sets it explicitly as well)
const child = spawn(bin, [root], { stdio: "inherit" });
child.on("exit", (code) => process.exit(code ?? 0));
