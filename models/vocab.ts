/**
 * Real tokenizer vocabularies without internet.
 *
 * node-llama-cpp ships llama.cpp's source tree as a git bundle
 * (node_modules/node-llama-cpp/llama/gitRelease.bundle), and llama.cpp keeps vocabulary-only GGUF
 * files for its tokenizer tests in models/ggml-vocab-*.gguf (qwen2, gpt-2, llama-bpe, phi-3...).
 * We fetch the bundle into a throw-away bare repository and `git cat-file` the files we need:
 * about one second, versus a full `git clone` with checkout of the whole tree.
 *
 * Needs the `git` command (present on developer machines and CI).
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readGguf } from "../inference/gguf.js";
import { errorMessage } from "../shared/errors.js";

const execFileP = promisify(execFile);

/** Vocabularies we know llama.cpp's tree carries. The name is the part of ggml-vocab-<name>.gguf. */
export type VocabName = "qwen2" | "gpt-2" | "llama-bpe" | "llama-spm" | "phi-3" | (string & {});

export function vocabFileName(name: VocabName): string {
  return `ggml-vocab-${name}.gguf`;
}

/** Locates node-llama-cpp's llama.cpp git bundle, or throws saying where it looked. */
export function findLlamaCppBundle(): string {
  const tried: string[] = [];
  const candidates: string[] = [];
  try {
    // Resolve the installed package, wherever node_modules is (hoisting, workspaces).
    const require = createRequire(import.meta.url);
    let dir = path.dirname(require.resolve("node-llama-cpp"));
    for (let i = 0; i < 5; i++) {
      candidates.push(path.join(dir, "llama", "gitRelease.bundle"));
      dir = path.dirname(dir);
    }
  } catch {
    // fall through to the repo-relative guess
  }
  const here = path.dirname(fileURLToPath(import.meta.url));
  candidates.push(path.resolve(here, "..", "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle"));
  for (const c of candidates) {
    tried.push(c);
    if (fs.existsSync(c)) return c;
  }
  throw new Error(`node-llama-cpp's llama.cpp git bundle not found; looked at:\n  ${tried.join("\n  ")}`);
}

/**
 * Makes sure `<dir>/ggml-vocab-<name>.gguf` exists for each name, extracting the missing ones from
 * the bundle in one git fetch. Files are written under a temporary name and renamed, so a killed
 * run never leaves a half file. Returns name -> path.
 */
export async function extractVocabs(names: readonly VocabName[], dir: string): Promise<Record<string, string>> {
  await fs.promises.mkdir(dir, { recursive: true });
  const out: Record<string, string> = {};
  const missing: VocabName[] = [];
  for (const name of names) {
    const p = path.join(dir, vocabFileName(name));
    out[name] = p;
    if (!fs.existsSync(p)) missing.push(name);
  }
  if (missing.length === 0) return out;

  const bundle = findLlamaCppBundle();
  const repo = await fs.promises.mkdtemp(path.join(os.tmpdir(), "tandem-llama-bundle-"));
  try {
    const git = (...args: string[]) => execFileP("git", ["-C", repo, ...args], { maxBuffer: 64 << 20, encoding: "buffer" });
    try {
      await execFileP("git", ["init", "-q", "--bare", repo]);
    } catch (e) {
      throw new Error(`cannot run git (needed to read llama.cpp's vocabularies from ${bundle}): ${errorMessage(e)}`, { cause: e });
    }
    // The bundle has a single head (HEAD); fetch it to a named ref.
    await git("fetch", "-q", bundle, "HEAD:refs/heads/bundle");
    for (const name of missing) {
      const rel = `models/${vocabFileName(name)}`;
      let blob: Buffer;
      try {
        blob = (await git("cat-file", "blob", `refs/heads/bundle:${rel}`)).stdout;
      } catch {
        throw new Error(`llama.cpp's bundle has no ${rel} (vocabulary "${name}")`);
      }
      const dest = out[name]!;
      const tmp = `${dest}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
      await fs.promises.writeFile(tmp, blob);
      readGguf(tmp); // refuse to cache something that isn't a GGUF
      await fs.promises.rename(tmp, dest);
    }
  } finally {
    await fs.promises.rm(repo, { recursive: true, force: true });
  }
  return out;
}
