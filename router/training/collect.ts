/**
 * Label collection with real inference (both models local, one thread each).
 *
 *   teacher-forced (iteration 1): references are the LLM's greedy continuations of prompts from the
 *     training text, or given reference answers (dataset answers); every position is labelled by the
 *     rules in labels.ts.
 *   routed (iteration 2, CITER): decode with the current router at some τ; every state the routed
 *     decoder visits is labelled against the LLM's greedy token there. This covers the states the
 *     router meets when free-running, which teacher forcing never shows it.
 */
import type { LocalModel } from "../../inference/localModel.js";
import type { Router } from "../../shared/router.js";
import { decide } from "../../shared/routing.js";
import { featureDim, featureNeeds, featureVector, type FeatureSpec } from "../features.js";
import { bindingOf } from "../file.js";
import { emptyLabelSet, type LabelSet } from "./labelFile.js";
import { labelPosition } from "./labels.js";
import { llmGreedy, runRouted, teacherForce } from "./pair.js";

export interface LabelItem {
  prompt: number[];
  /** a given reference (dataset answer); default: the LLM's greedy continuation */
  reference?: number[];
  /** checks a full answer (tokens after the prompt), for rollouts; absent = not checkable */
  check?: (answerTokens: number[]) => boolean;
}

export function newLabelSet(slm: LocalModel, llm: LocalModel, features: FeatureSpec): LabelSet {
  return emptyLabelSet({ ...bindingOf(slm), vocabSize: slm.vocabSize }, llm.identity, features, featureDim(features, slm.hiddenSize));
}

/** SLM-alone greedy continuation of `prefix` (for rollouts). */
async function slmRollout(slm: LocalModel, prefix: number[], maxTokens: number): Promise<number[]> {
  const needs = { top1Prob: false, topK: 0, hidden: false };
  let s = await slm.begin(prefix, needs);
  const out: number[] = [];
  while (out.length < maxTokens && !slm.isEndOfGeneration(s.tokenId)) {
    out.push(s.tokenId);
    s = await slm.advance(s.tokenId, needs);
  }
  return out;
}

export async function collectTeacherForced(
  set: LabelSet,
  slm: LocalModel,
  llm: LocalModel,
  items: readonly LabelItem[],
  opts: { continuationTokens: number; rolloutTokens?: number; log?: (s: string) => void },
): Promise<LabelSet> {
  const needs = featureNeeds(set.features);
  let group = set.groups.length ? Math.max(...set.groups) + 1 : 0;
  for (const [k, item] of items.entries()) {
    const ref = item.reference ?? (await llmGreedy(llm, item.prompt, opts.continuationTokens));
    if (ref.length < 2) continue;
    const seq = [...item.prompt, ...ref];
    const from = item.prompt.length;
    // LLM probabilities settle rule 4. With the LLM's own greedy continuation as reference they are
    // needed only at numerical near-ties (batch vs. one-at-a-time evaluation: ~1 position in 15k), but
    // we can't know where in advance; on large vocabularies they cost ~70 ms a position (docs/FACTS.md).
    const positions = await teacherForce(slm, llm, seq, from, needs, true);
    for (let j = 0; j < positions.length; j++) {
      const p = positions[j]!;
      const refTok = seq[from + j]!;
      let rollout: { slmCorrect: boolean; llmCorrect: boolean } | undefined;
      if (item.check && p.slmTok !== refTok && p.llmTok !== refTok) {
        const prefix = seq.slice(0, from + j);
        const answerSoFar = ref.slice(0, j);
        const n = opts.rolloutTokens ?? 64;
        const withSlm = [...answerSoFar, p.slmTok, ...(await slmRollout(slm, [...prefix, p.slmTok], n))];
        const withLlm = [...answerSoFar, p.llmTok, ...(await slmRollout(slm, [...prefix, p.llmTok], n))];
        rollout = { slmCorrect: item.check(withSlm), llmCorrect: item.check(withLlm) };
      }
      const { label, rule } = labelPosition({ slmTok: p.slmTok, llmTok: p.llmTok, refTok, rollout, llmProb: p.llmProb });
      set.X.push(featureVector(p.features, set.features, set.slm.hiddenSize) as never);
      set.y.push(label);
      set.groups.push(group);
      set.sources.push("teacher-forced");
      set.rules.push(rule);
      const pRef = Math.max(p.llmProb!(refTok), p.llmProb!(p.llmTok), 1e-12);
      set.soft.push(Math.min(1, p.llmProb!(p.slmTok) / pRef));
    }
    set.sequences.push(seq);
    group++;
    if (opts.log && (k + 1) % 50 === 0) opts.log(`  teacher-forced: ${k + 1}/${items.length} prompts, ${set.y.length} positions`);
  }
  return set;
}

export async function collectRouted(
  set: LabelSet,
  slm: LocalModel,
  llm: LocalModel,
  prompts: readonly number[][],
  router: Router,
  tau: number,
  opts: { maxTokens: number; log?: (s: string) => void },
): Promise<LabelSet> {
  const needs = featureNeeds(set.features);
  // the router may need features the label set does not store (or the reverse): ask for both
  const both = {
    top1Prob: needs.top1Prob || router.needs.top1Prob,
    topK: Math.max(needs.topK, router.needs.topK),
    hidden: needs.hidden || router.needs.hidden,
  };
  let group = set.groups.length ? Math.max(...set.groups) + 1 : 0;
  let routed = 0;
  let total = 0;
  for (const prompt of prompts) {
    const steps = await runRouted(slm, llm, prompt, (p) => decide(router, p.features, tau).toCloud, {
      maxTokens: opts.maxTokens,
      slmNeeds: both,
      score: true, // the LLM's probabilities give the soft labels
    });
    for (const s of steps) {
      const { label, rule } = labelPosition({ slmTok: s.slmTok, llmTok: s.llmTok, refTok: s.llmTok });
      set.X.push(featureVector(s.features, set.features, set.slm.hiddenSize) as never);
      set.y.push(label);
      set.groups.push(group);
      set.sources.push("routed");
      set.rules.push(rule);
      set.soft.push(s.softLabel);
      routed += s.routed ? 1 : 0;
      total++;
    }
    set.sequences.push([...prompt, ...steps.map((s) => s.chosen)]);
    group++;
  }
  set.notes.push(
    `routed: ${prompts.length} prompts at τ=${tau.toFixed(4)} (${router.name}), cloud share ${((routed / Math.max(1, total)) * 100).toFixed(1)}%`,
  );
  opts.log?.(`  routed at τ=${tau.toFixed(3)}: ${total} positions, cloud share ${((routed / Math.max(1, total)) * 100).toFixed(1)}%`);
  return set;
}

/** τ at which `scores` put (about) `share` of the positions below it: the share-th quantile. */
export function tauForShare(scores: readonly number[], share: number): number {
  if (share <= 0) return 0;
  if (share >= 1) return 1;
  const sorted = [...scores].sort((a, b) => a - b);
  const k = Math.round(share * sorted.length);
  if (k <= 0) return sorted[0]!; // nothing strictly below the minimum
  if (k >= sorted.length) return 1;
  // route = score < τ: put τ between the k-th and (k+1)-th smallest
  const lo = sorted[k - 1]!;
  const hi = sorted[k]!;
  return lo === hi ? hi : (lo + hi) / 2;
}
