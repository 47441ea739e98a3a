/**
 * Where the app keeps models: a folder the user can see in the Finder and change (TANDEM_MODELS_DIR),
 * outside the app's data folder, so multi-GB files are not inside ~/Library/Application Support and
 * every mode (the Electron app in development and packaged, browser mode) finds the same downloads.
 */
import { homedir } from "node:os";
import path from "node:path";

/** `~` and `~/…` are the user's home; everything else is returned as given. */
export function expandHome(p: string, home: string = homedir()): string {
  if (p === "~") return home;
  if (p.startsWith("~/")) return path.join(home, p.slice(2));
  return p;
}

/** $TANDEM_MODELS_DIR, else ~/Tandem/Models. */
export function defaultModelsDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const dir = env.TANDEM_MODELS_DIR?.trim();
  return dir ? path.resolve(expandHome(dir, home)) : path.join(home, "Tandem", "Models");
}
