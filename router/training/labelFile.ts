/**
 * Labelled positions on disk: features (float32, base64), labels, sequence ids, and the token
 * sequences they came from (for the evaluation's unseen-context filter), tagged with both models'
 * identities and the feature spec. Label files for the same pair and features can be merged
 * (first-iteration teacher-forced + second-iteration routed labels).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { ModelIdentity } from "../../shared/protocol.js";
import type { FeatureSpec } from "../features.js";
import type { SlmBinding } from "../file.js";
import type { LabelRule } from "./labels.js";
import type { TrainData } from "./train.js";

export const LABELS_FORMAT = "tandem-router-labels";

export type LabelSource = "teacher-forced" | "routed";

export interface LabelSet {
  slm: SlmBinding & { vocabSize: number };
  llm: ModelIdentity;
  features: FeatureSpec;
  d: number;
  X: number[][] | Float32Array[]; // one vector per row (in memory)
  y: number[];
  groups: number[];
  sources: LabelSource[];
  rules: LabelRule[];
  /**
   * soft target per row: P_LLM(SLM's token) / P_LLM(reference token), capped at 1 — how much worse the
   * LLM finds the SLM's token. 1 where they agree; near 1 for a harmless synonym; near 0 for a token the
   * LLM rejects. NaN where unknown. Used by `router:train --target soft`.
   */
  soft: number[];
  /** the token sequences labelled (prompt + continuation), for the unseen-context filter */
  sequences: number[][];
  /** provenance: text file, prompts, iteration, τ of routed runs */
  notes: string[];
}

export function emptyLabelSet(slm: LabelSet["slm"], llm: ModelIdentity, features: FeatureSpec, d: number): LabelSet {
  return { slm, llm, features, d, X: [], y: [], groups: [], sources: [], rules: [], soft: [], sequences: [], notes: [] };
}

export function writeLabelFile(file: string, s: LabelSet): void {
  const n = s.y.length;
  const X = new Float32Array(n * s.d);
  s.X.forEach((v, i) => X.set(v as ArrayLike<number>, i * s.d));
  const json = {
    format: LABELS_FORMAT,
    version: 1,
    slm: s.slm,
    llm: s.llm,
    features: s.features,
    d: s.d,
    n,
    X: Buffer.from(X.buffer).toString("base64"),
    y: s.y,
    groups: s.groups,
    sources: s.sources,
    rules: s.rules,
    soft: s.soft.map((v) => (Number.isFinite(v) ? v : null)),
    sequences: s.sequences,
    notes: s.notes,
    createdAt: new Date().toISOString(),
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(json) + "\n");
}

export function readLabelFile(file: string): LabelSet {
  const j = JSON.parse(fs.readFileSync(file, "utf8"));
  if (j.format !== LABELS_FORMAT) throw new Error(`${file} is not a Tandem label file`);
  const buf = Buffer.from(j.X, "base64");
  const all = new Float32Array(j.n * j.d);
  new Uint8Array(all.buffer).set(buf);
  const X = Array.from({ length: j.n }, (_, i) => all.subarray(i * j.d, (i + 1) * j.d));
  return {
    slm: j.slm,
    llm: j.llm,
    features: j.features,
    d: j.d,
    X,
    y: j.y,
    groups: j.groups,
    sources: j.sources,
    rules: j.rules,
    soft: (j.soft ?? j.y.map(() => null)).map((v: number | null) => v ?? NaN),
    sequences: j.sequences,
    notes: j.notes,
  };
}

/** Appends `b` to `a` (same models and features), renumbering b's sequence ids after a's. */
export function mergeLabelSets(a: LabelSet, b: LabelSet): LabelSet {
  if (a.slm.name !== b.slm.name || a.slm.vocabHash !== b.slm.vocabHash || a.llm.name !== b.llm.name) {
    throw new Error(`Cannot merge labels of different model pairs (${a.slm.name}/${a.llm.name} vs ${b.slm.name}/${b.llm.name})`);
  }
  if (JSON.stringify(a.features) !== JSON.stringify(b.features)) throw new Error("Cannot merge labels with different feature specs");
  const off = a.groups.length ? Math.max(...a.groups) + 1 : 0;
  return {
    ...a,
    X: [...a.X, ...b.X] as Float32Array[],
    y: [...a.y, ...b.y],
    groups: [...a.groups, ...b.groups.map((g) => g + off)],
    sources: [...a.sources, ...b.sources],
    rules: [...a.rules, ...b.rules],
    soft: [...a.soft, ...b.soft],
    sequences: [...a.sequences, ...b.sequences],
    notes: [...a.notes, ...b.notes],
  };
}

/** Training data: hard CITER labels, or the soft targets (falling back to the hard label where unknown). */
export function toTrainData(s: LabelSet, target: "hard" | "soft" = "hard"): TrainData {
  const n = s.y.length;
  const X = new Float32Array(n * s.d);
  s.X.forEach((v, i) => X.set(v as ArrayLike<number>, i * s.d));
  const y = target === "hard" ? Uint8Array.from(s.y) : Float32Array.from(s.y, (h, i) => (Number.isFinite(s.soft[i]) ? s.soft[i]! : h));
  return { X, y, groups: Int32Array.from(s.groups), n, d: s.d };
}
