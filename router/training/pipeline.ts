/**
 * The label → train pipeline as library functions, shared by `npm run router:label`,
 * `npm run router:train` and the evaluation (which trains a router itself when none matches).
 */
import * as path from "node:path";
import type { LocalModel } from "../../inference/localModel.js";
import { collectRouted, collectTeacherForced, newLabelSet, tauForShare, type LabelItem } from "./collect.js";
import { DEFAULT_FEATURES, featureSpecName, type FeatureSpec } from "../features.js";
import { encodeRouterFile, routerFileName, writeRouterFile, type TrainReport } from "../file.js";
import { toTrainData, type LabelSet } from "./labelFile.js";
import { defaultRouterDir, LearnedRouter } from "../learnedRouter.js";
import { samplePrompts, splitText } from "./text.js";
import { trainRouter, type TrainOptions } from "./train.js";

export interface LabelOptions {
  /** the whole training text; its first `trainFraction` is used (the rest is the default held-out text) */
  text: string;
  trainFraction: number;
  prompts: number;
  promptTokens: number;
  continuationTokens: number;
  features: FeatureSpec;
  seed: number;
  /**
   * label these items (dataset questions) instead of prompts from `text`; `text` then only feeds the
   * unseen-context index
   */
  items?: LabelItem[];
  /** CITER's 2nd iteration: also label states visited by this router at these cloud shares */
  routed?: { router: LearnedRouter; shares: number[]; prompts: number };
  log?: (s: string) => void;
}

export const DEFAULT_LABEL_OPTIONS = {
  trainFraction: 0.8,
  prompts: 300,
  promptTokens: 12,
  continuationTokens: 48,
  features: DEFAULT_FEATURES,
  seed: 1,
};

export async function buildLabels(slm: LocalModel, llm: LocalModel, o: LabelOptions): Promise<LabelSet> {
  const { train } = splitText(o.text, o.trainFraction);
  const tok = (s: string) => slm.tokenizeText(s);
  const items = o.items ?? samplePrompts(train, tok, o.prompts, o.promptTokens, o.seed).map((prompt) => ({ prompt }));
  const prompts = items.map((i) => i.prompt);
  o.log?.(
    `labelling ${items.length} prompts (+ ${o.continuationTokens} reference tokens each at most), features ${featureSpecName(o.features)}`,
  );
  const set = newLabelSet(slm, llm, o.features);
  set.sequences.push(tok(train)); // the raw training text counts as seen
  set.notes.push(
    o.items
      ? `teacher-forced: ${items.length} dataset items`
      : `teacher-forced: ${items.length} prompts from the first ${Math.round(o.trainFraction * 100)}% of the text, seed ${o.seed}`,
  );
  await collectTeacherForced(set, slm, llm, items, { continuationTokens: o.continuationTokens, log: o.log });
  if (o.routed) {
    const r = o.routed.router;
    if (JSON.stringify(r.features) !== JSON.stringify(o.features))
      throw new Error("The routed iteration needs a router trained on the same features");
    const scores = (set.X as ArrayLike<number>[]).map((v) => r.scoreVector(v));
    // routed trajectories start from other prompts of the same training material
    const more = o.items ? prompts : samplePrompts(train, tok, o.routed.prompts, o.promptTokens, o.seed + 1000);
    const per = Math.max(1, Math.floor(more.length / o.routed.shares.length));
    for (const [i, share] of o.routed.shares.entries()) {
      const tau = tauForShare(scores, share);
      await collectRouted(set, slm, llm, more.slice(i * per, (i + 1) * per), r, tau, { maxTokens: o.continuationTokens, log: o.log });
    }
  }
  const pos = set.y.reduce((a, b) => a + b, 0);
  o.log?.(`labels: ${set.y.length} positions, ${((pos / Math.max(1, set.y.length)) * 100).toFixed(1)}% SLM-acceptable`);
  return set;
}

export function trainFromLabels(
  set: LabelSet,
  opts: Omit<TrainOptions, "hiddenSize"> & { outDir?: string; labelsFile?: string; target?: "hard" | "soft" },
): { file: string; report: TrainReport; router: LearnedRouter } {
  const data = toTrainData(set, opts.target ?? "soft");
  const { params, report } = trainRouter(data, { ...opts, hiddenSize: set.slm.hiddenSize });
  const file = path.join(opts.outDir ?? defaultRouterDir(), routerFileName(set.slm));
  const json = encodeRouterFile({
    slm: set.slm,
    llm: set.llm,
    features: set.features,
    params,
    training: { ...report, labels: opts.labelsFile, target: opts.target ?? "soft", createdAt: new Date().toISOString() },
    seen: set.sequences,
  });
  writeRouterFile(file, json);
  return {
    file,
    report,
    router: new LearnedRouter(
      params,
      set.features,
      { name: set.slm.name, vocabHash: set.slm.vocabHash, hiddenSize: set.slm.hiddenSize },
      file,
    ),
  };
}

/**
 * The whole recipe, as the evaluation runs it when no router matches the SLM (and as the README's
 * four commands do): teacher-forced labels → train → labels on trajectories routed by that router at
 * 5/10/20% cloud share (CITER's 2nd iteration) → train again on both. Soft targets by default.
 */
export async function labelAndTrain(
  slm: LocalModel,
  llm: LocalModel,
  o: { text: string; seed?: number; outDir?: string; labelsFile?: string; log?: (s: string) => void },
): Promise<{ file: string; report: TrainReport; set: LabelSet }> {
  const base = { ...DEFAULT_LABEL_OPTIONS, text: o.text, seed: o.seed ?? DEFAULT_LABEL_OPTIONS.seed, log: o.log };
  const first = await buildLabels(slm, llm, base);
  const r1 = trainFromLabels(first, { seed: base.seed, outDir: o.outDir, labelsFile: o.labelsFile });
  o.log?.(`iteration 1: val AUC ${r1.report.valAuc.toFixed(3)}; labelling routed trajectories`);
  const second = await buildLabels(slm, llm, { ...base, routed: { router: r1.router, shares: [0.05, 0.1, 0.2], prompts: base.prompts } });
  const r2 = trainFromLabels(second, { seed: base.seed, outDir: o.outDir, labelsFile: o.labelsFile });
  o.log?.(`iteration 2: val AUC ${r2.report.valAuc.toFixed(3)} → ${r2.file}`);
  return { file: r2.file, report: r2.report, set: second };
}
