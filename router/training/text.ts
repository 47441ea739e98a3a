/**
 * Text → prompts, the train/held-out split, and the "unseen context" index.
 *
 * The stories sample is small and repetitive (the same story appears several times, and greedy
 * TinyStories continuations fall into stock phrases), so the evaluation counts only positions whose
 * preceding context — the last `n` tokens — never occurs in the text the router was trained on
 * (the training text itself and every sequence labelled from it).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Rng } from "../../shared/prng.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

export function defaultSharedDir(): string {
  return process.env.TANDEM_SHARED_DIR ? path.resolve(process.env.TANDEM_SHARED_DIR) : path.resolve(repoRoot, "..", "shared");
}

export function defaultTrainingTextPath(): string {
  return path.join(defaultSharedDir(), "data", "tinystories_sample_train.txt");
}

/** The first `fraction` of the text (cut at a line or sentence end) trains; the rest is held out. */
export function splitText(text: string, fraction: number): { train: string; heldOut: string } {
  let cut = Math.floor(text.length * fraction);
  const end = text.slice(cut).search(/[.!?]\s/);
  if (end >= 0) cut += end + 2;
  return { train: text.slice(0, cut), heldOut: text.slice(cut) };
}

/**
 * `count` prompts of `promptTokens` tokens taken at seeded random word starts in `text`
 * (each prompt is tokenised on its own, with BOS when the model wants one).
 */
export function samplePrompts(
  text: string,
  tokenize: (s: string) => number[],
  count: number,
  promptTokens: number,
  seed: number,
): number[][] {
  const starts: number[] = [];
  const re = /(^|[.!?]\s+|\n)(?=\S)/g;
  for (let m; (m = re.exec(text));) {
    starts.push(m.index + m[0].length);
    if (m[0].length === 0) re.lastIndex++;
  }
  const words: number[] = [];
  const wr = /\s(?=\S)/g;
  for (let m; (m = wr.exec(text));) words.push(m.index + 1);
  // sentence starts first (natural prompts); word starts when sentences run out
  const rng = new Rng(seed);
  const pool = [...rng.shuffle([...new Set(starts)]), ...rng.shuffle(words)];
  const out: number[][] = [];
  const seen = new Set<string>();
  for (const s of pool) {
    if (out.length >= count) break;
    const toks = tokenize(text.slice(s, s + promptTokens * 8)).slice(0, promptTokens + 1);
    if (toks.length < promptTokens) continue;
    const key = toks.join(",");
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(toks);
  }
  return out;
}

/** Set of token n-grams seen in training: a position is "unseen" when its last n tokens are not in it. */
export class NgramIndex {
  private readonly set = new Set<string>();
  constructor(readonly n: number) {}
  add(tokens: readonly number[]): void {
    for (let i = 0; i + this.n <= tokens.length; i++) this.set.add(tokens.slice(i, i + this.n).join(","));
  }
  /** true when the n tokens before position `pos` of `tokens` occur in the index */
  seen(tokens: readonly number[], pos: number): boolean {
    if (pos < this.n) return false;
    return this.set.has(tokens.slice(pos - this.n, pos).join(","));
  }
  get size(): number {
    return this.set.size;
  }
}

export function readText(file: string): string {
  if (!fs.existsSync(file)) throw new Error(`Text file not found: ${file}`);
  return fs.readFileSync(file, "utf8");
}
