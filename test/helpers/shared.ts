/** Where ../shared is, and how a test says it is missing. */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const sharedDir = process.env.TANDEM_SHARED_DIR ?? path.resolve(repoRoot, "..", "shared");
export const stories260K = path.join(sharedDir, "models", "stories260K.gguf");
export const hasStories = existsSync(stories260K);

/** Call at the top of a describe that needs ../shared: logs why it will be skipped. */
export function noteMissingShared(what: string): void {
  if (!hasStories) console.warn(`[skip] ${what}: ${stories260K} not found (../shared is not beside the checkout)`);
}
