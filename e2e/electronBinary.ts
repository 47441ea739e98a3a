/** Where the Electron binary is, without require("electron") (which tries to download it in plain Node). */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "./harness.js";

export function electronBinaryPath(): string | null {
  const dir = path.join(repoRoot, "node_modules", "electron");
  const pathFile = path.join(dir, "path.txt");
  if (!existsSync(pathFile)) return null;
  const bin = path.join(dir, "dist", readFileSync(pathFile, "utf8").trim());
  return existsSync(bin) ? bin : null;
}
