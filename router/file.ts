/**
 * The router file: JSON, tagged with the identity of the SLM it was trained on. A router reads the
 * hidden state of one particular network; on another model (even one with the same vocabulary and
 * hidden size, like the stories260K pair) its scores are meaningless, so loading refuses any mismatch
 * of name, hidden size or vocabulary hash with an error naming both models.
 *
 * Weights are stored as base64 little-endian float32 (compact, exact round trip).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { ModelIdentity } from "../shared/protocol.js";
import type { FeatureSpec } from "./features.js";
import type { MlpParams } from "./mlp.js";
import { TandemError, errorMessage } from "../shared/errors.js";

export const ROUTER_FORMAT = "tandem-router";
export const ROUTER_FORMAT_VERSION = 1;
export const ROUTER_FILE_SUFFIX = ".router.json";

/** What a router is bound to: the SLM's identity plus its hidden size. */
export interface SlmBinding {
  name: string;
  vocabHash: string;
  hiddenSize: number;
}

/** What training reports about a router: stored in its file. */
export interface TrainReport {
  seed: number;
  rows: { train: number; val: number };
  positiveShare: number;
  balanced: boolean;
  epochs: number;
  bestEpoch: number;
  trainLoss: number[];
  valLoss: number[];
  valAuc: number;
  valAccuracy: number;
}

export interface RouterFileJson {
  format: typeof ROUTER_FORMAT;
  version: number;
  slm: SlmBinding & { vocabSize?: number };
  /** the LLM whose preferences were learned (informational: the router runs without it) */
  llm?: ModelIdentity;
  features: FeatureSpec;
  network: { sizes: number[]; weights: string[]; biases: string[]; mean: string; std: string };
  training?: Partial<TrainReport> & { labels?: string; target?: string; createdAt?: string; fidelity?: Fidelity };
  /**
   * the token sequences the router was trained on (int32 base64, split by `lengths`): the evaluation
   * counts only positions whose context is not in them, even where the label file is absent
   */
  seen?: { lengths: number[]; tokens: string };
}

export function encodeSeen(seqs: readonly (readonly number[])[]): { lengths: number[]; tokens: string } {
  const flat = Int32Array.from(seqs.flat());
  return { lengths: seqs.map((s) => s.length), tokens: Buffer.from(flat.buffer).toString("base64") };
}

export function decodeSeen(seen: { lengths: number[]; tokens: string }): number[][] {
  const buf = Buffer.from(seen.tokens, "base64");
  const flat = new Int32Array(buf.byteLength / 4);
  new Uint8Array(flat.buffer).set(buf);
  const out: number[][] = [];
  let o = 0;
  for (const n of seen.lengths) {
    out.push(Array.from(flat.subarray(o, o + n)));
    o += n;
  }
  return out;
}

/** The router file's training target for a distilled router (a learned router's is "soft"/"hard"). */
export const DISTILLED_TARGET = "slm-top1";

export interface Fidelity {
  /** held-out positions compared */
  positions: number;
  /** rank correlation of the two scores */
  spearman: number;
  /** mean |predicted − true| top-1 probability */
  meanAbsError: number;
  /** at each cloud share: the share of the confidence router's routed positions the distilled router also routes */
  overlap: { share: number; overlap: number }[];
  /** at each τ: the share of positions where both routers decide alike */
  agreement: { tau: number; agreement: number }[];
}

export const isDistilled = (json: RouterFileJson): boolean => json.training?.target === DISTILLED_TARGET;

/** One line for logs and the inspector. */
export function describeFidelity(f: Fidelity): string {
  const ov = f.overlap.map((o) => `${Math.round(o.share * 100)}%: ${(o.overlap * 100).toFixed(0)}%`).join(", ");
  return `Spearman ${f.spearman.toFixed(3)}, mean |Δp| ${f.meanAbsError.toFixed(3)}, routed-set overlap with the confidence router ${ov} (${f.positions} held-out positions)`;
}

export class RouterFileError extends TandemError {
  constructor(message: string) {
    super("router_file", message);
    this.name = "RouterFileError";
  }
}

/** A router file trained on another SLM. */
export class RouterMismatchError extends RouterFileError {
  constructor(
    readonly file: string,
    readonly expected: SlmBinding,
    readonly found: SlmBinding,
  ) {
    const diffs: string[] = [];
    if (expected.name !== found.name) diffs.push(`name "${found.name}" ≠ "${expected.name}"`);
    if (expected.hiddenSize !== found.hiddenSize) diffs.push(`hidden size ${found.hiddenSize} ≠ ${expected.hiddenSize}`);
    if (expected.vocabHash !== found.vocabHash)
      diffs.push(`vocabulary ${found.vocabHash.slice(0, 12)}… ≠ ${expected.vocabHash.slice(0, 12)}…`);
    super(
      `Router ${path.basename(file)} was trained for the SLM "${found.name}" and cannot be used with "${expected.name}" (${diffs.join("; ")}). ` +
        `Train one for this SLM with npm run router:label and npm run router:train.`,
    );
    this.name = "RouterMismatchError";
  }
}

export function bindingOf(slm: { identity: ModelIdentity; hiddenSize: number }): SlmBinding {
  return { name: slm.identity.name, vocabHash: slm.identity.vocabHash, hiddenSize: slm.hiddenSize };
}

export function sameBinding(a: SlmBinding, b: SlmBinding): boolean {
  return a.name === b.name && a.hiddenSize === b.hiddenSize && a.vocabHash === b.vocabHash;
}

const b64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function unb64(s: string, expected: number, what: string): Float32Array {
  const buf = Buffer.from(s, "base64");
  if (buf.byteLength !== expected * 4)
    throw new RouterFileError(`Router file: ${what} has ${buf.byteLength} bytes, expected ${expected} float32 values`);
  const out = new Float32Array(expected);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export function encodeRouterFile(r: {
  slm: SlmBinding & { vocabSize?: number };
  llm?: ModelIdentity;
  features: FeatureSpec;
  params: MlpParams;
  training?: RouterFileJson["training"];
  seen?: readonly (readonly number[])[];
}): RouterFileJson {
  return {
    format: ROUTER_FORMAT,
    version: ROUTER_FORMAT_VERSION,
    slm: r.slm,
    llm: r.llm,
    features: r.features,
    network: {
      sizes: r.params.sizes,
      weights: r.params.weights.map(b64),
      biases: r.params.biases.map(b64),
      mean: b64(r.params.mean),
      std: b64(r.params.std),
    },
    training: r.training,
    seen: r.seen ? encodeSeen(r.seen) : undefined,
  };
}

/** Parses and validates a router file's JSON (shape only; identity is checked by the caller). */
export function decodeRouterFile(j: unknown, file = "router"): { json: RouterFileJson; params: MlpParams } {
  const r = j as RouterFileJson;
  if (!r || r.format !== ROUTER_FORMAT)
    throw new RouterFileError(`${file} is not a Tandem router file (format "${ROUTER_FORMAT}" expected)`);
  if (r.version !== ROUTER_FORMAT_VERSION)
    throw new RouterFileError(`${file}: router format version ${r.version} is not supported (expected ${ROUTER_FORMAT_VERSION})`);
  if (!r.slm || typeof r.slm.name !== "string" || typeof r.slm.vocabHash !== "string" || !Number.isInteger(r.slm.hiddenSize)) {
    throw new RouterFileError(`${file}: the router file names no SLM identity`);
  }
  const sizes = r.network?.sizes;
  if (!Array.isArray(sizes) || sizes.length < 2 || sizes[sizes.length - 1] !== 1) throw new RouterFileError(`${file}: bad network sizes`);
  const L = sizes.length - 1;
  if (r.network.weights.length !== L || r.network.biases.length !== L) throw new RouterFileError(`${file}: expected ${L} layers`);
  const params: MlpParams = {
    sizes,
    weights: r.network.weights.map((w, l) => unb64(w, sizes[l]! * sizes[l + 1]!, `layer ${l} weights`)),
    biases: r.network.biases.map((b, l) => unb64(b, sizes[l + 1]!, `layer ${l} biases`)),
    mean: unb64(r.network.mean, sizes[0]!, "input mean"),
    std: unb64(r.network.std, sizes[0]!, "input std"),
  };
  return { json: r, params };
}

export function writeRouterFile(file: string, json: RouterFileJson): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(json, null, 1) + "\n");
    fs.renameSync(tmp, file); // atomic: the app never sees half a router
  } catch (err) {
    fs.rmSync(tmp, { force: true }); // a full disk must not keep a half-written file taking its space
    throw err;
  }
}

export function readRouterFileJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new RouterFileError(`Cannot read router file ${file}: ${errorMessage(e)}`);
  }
}

/** The distilled confidence router's file for an SLM (beside, not instead of, a learned router). */
export function distilledRouterFileName(slm: SlmBinding): string {
  return routerFileName(slm).replace(ROUTER_FILE_SUFFIX, `.distilled${ROUTER_FILE_SUFFIX}`);
}

/** A file-system-safe name for an SLM's router file. */
export function routerFileName(slm: SlmBinding): string {
  const slug = slm.name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 60);
  return `${slug}-${slm.vocabHash.slice(0, 8)}-h${slm.hiddenSize}${ROUTER_FILE_SUFFIX}`;
}
