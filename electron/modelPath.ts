/**
 * A GGUF path typed into the app: `~` is the user's home; a relative path is refused, because the
 * packaged app's working directory is `/` when it is opened from the Finder (it would name a file the
 * user never meant). `hf:` URIs and URLs pass through to the engine, which knows them.
 */
import { expandHome } from "../inference/appFolders.js";
import path from "node:path";

export function normaliseModelPath(input: string, home?: string): string {
  const p = input.trim();
  if (!p) throw new Error("Give the model file's path, or choose it with Choose file…");
  if (/^[a-z][a-z0-9+.-]*:/i.test(p) && !/^[a-z]:[\\/]/i.test(p)) return p; // hf:…, https://…
  const expanded = expandHome(p, home);
  if (!path.isAbsolute(expanded)) {
    throw new Error(`"${p}" is a relative path: give the full path (starting with / or ~/), or choose the file with Choose file…`);
  }
  return path.normalize(expanded);
}
