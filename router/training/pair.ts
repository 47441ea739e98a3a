/**
 * Running the SLM and the LLM side by side on one history, locally (no HTTP): the engine of both
 * label collection and evaluation. At each position we know the SLM's step (greedy token + router
 * features), the LLM's greedy token and, when scoring, the LLM's probability of any token.
 */
import type { LocalModel, SlmStep } from "../../inference/localModel.js";
import type { FeatureNeeds, RouterFeatures } from "../../shared/router.js";
import { keptFeatures } from "../../shared/routing.js";
import { hasPenalties, isGreedy, sampleToken, uniformAt, type SamplingSettings } from "../../shared/sampling.js";
import { UsageError } from "../../shared/errors.js";

export interface PairPosition {
  slmTok: number;
  llmTok: number;
  features: RouterFeatures;
  /** LLM probability of a token at this position (only when scoring was asked) */
  llmProb?: (token: number) => number;
}

function probLookup(step: SlmStep): (t: number) => number {
  const m = new Map<number, number>();
  for (const c of step.top ?? []) m.set(c.tokenId, c.prob);
  return (t) => m.get(t) ?? 0;
}

export function llmNeeds(llm: LocalModel, withProbs: boolean): FeatureNeeds {
  return { top1Prob: false, topK: withProbs ? llm.vocabSize : 0, hidden: false };
}

/**
 * Teacher forcing along `seq`: for every position i in [from, seq.length), what each model predicts
 * after seq[0..i). The SLM steps one token at a time (its hidden state exists only for the last
 * position of a decode); the LLM verifies the whole run in one batch.
 */
export async function teacherForce(
  slm: LocalModel,
  llm: LocalModel,
  seq: readonly number[],
  from: number,
  slmNeeds: FeatureNeeds,
  llmProbs: boolean,
): Promise<PairPosition[]> {
  if (from < 1 || from >= seq.length) throw new Error(`teacherForce: from=${from} outside [1, ${seq.length})`);
  const out: PairPosition[] = [];
  let s = await slm.begin(seq.slice(0, from), slmNeeds);
  const slmSteps: SlmStep[] = [s];
  for (let i = from; i < seq.length - 1; i++) {
    s = await slm.advance(seq[i]!, slmNeeds);
    slmSteps.push(s);
  }
  const ln = llmNeeds(llm, llmProbs);
  const l0 = await llm.begin(seq.slice(0, from), ln);
  const rest = seq.length - 1 > from ? await llm.evaluateAll(seq.slice(from, seq.length - 1), ln) : [];
  const llmSteps = [l0, ...rest];
  for (let k = 0; k < slmSteps.length; k++) {
    const ls = llmSteps[k]!;
    out.push({
      slmTok: slmSteps[k]!.tokenId,
      llmTok: ls.tokenId,
      features: keptFeatures(slmSteps[k]!, k),
      llmProb: llmProbs ? probLookup(ls) : undefined,
    });
  }
  return out;
}

/** The LLM's greedy continuation of `prompt` (stops at end of generation). */
export async function llmGreedy(llm: LocalModel, prompt: readonly number[], maxTokens: number): Promise<number[]> {
  const needs = llmNeeds(llm, false);
  let s = await llm.begin(prompt, needs);
  const out: number[] = [];
  while (out.length < maxTokens && !llm.isEndOfGeneration(s.tokenId)) {
    out.push(s.tokenId);
    if (out.length < maxTokens) s = await llm.advance(s.tokenId, needs);
  }
  return out;
}

export interface RoutedStep {
  slmTok: number;
  llmTok: number;
  chosen: number;
  routed: boolean;
  features: RouterFeatures;
  /** log P_LLM(chosen | history): the free-running quality score */
  llmLogprob: number;
  /** P_LLM(SLM's token) / P_LLM(LLM's token) when scoring (the soft label), else NaN */
  softLabel: number;
}

/** Decides, per position, whether the LLM's token is taken. */
export type RoutePolicy = (p: { features: RouterFeatures; slmTok: number; llmTok: number; index: number }) => boolean;

/**
 * The token a routed decoding emits from `step` (the model that writes the position) at `position`
 * (tokens before it, prompt included): its greedy token, or with sampling Tandem's draw
 * (shared/sampling.ts) from the model's full distribution with the keyed number of (seed, position) —
 * the same number whichever model writes the position, as on the device.
 */
function emitted(step: SlmStep, sampling: SamplingSettings | undefined, position: number): number {
  if (!sampling || isGreedy(sampling)) return step.tokenId;
  const cands = (step.top ?? []).map((c) => ({ tokenId: c.tokenId, weight: c.prob }));
  return sampleToken(cands, sampling, uniformAt(sampling.seed, position)).tokenId;
}

/** A step as a router reads it: the candidates it asked for (sampling reads the whole distribution). */
const asRouterSees = (step: SlmStep, needs: FeatureNeeds): SlmStep =>
  needs.topK > 0 ? { ...step, top: step.top?.slice(0, needs.topK) } : { ...step, top: undefined };

/**
 * Free-running routed decoding with both models local: the chosen token (the LLM's where the policy
 * routes, else the SLM's; greedy, or drawn with `sampling`) is fed to both, so both always hold the
 * same history — the decoding the engine does, minus the network, plus the LLM's score of every token.
 * Sampling reads each model's full distribution at temperature 0, unpenalised: eval samples without
 * the penalties, which need the logits themselves (shared/sampling.ts).
 */
export async function runRouted(
  slm: LocalModel,
  llm: LocalModel,
  prompt: readonly number[],
  policy: RoutePolicy,
  opts: { maxTokens: number; slmNeeds: FeatureNeeds; score: boolean; sampling?: SamplingSettings },
): Promise<RoutedStep[]> {
  const sampled = opts.sampling && !isGreedy(opts.sampling) ? opts.sampling : undefined;
  if (sampled && hasPenalties(sampled))
    throw new UsageError("eval samples without penalties: leave the repetition, presence and frequency penalties off");
  const ln = llmNeeds(llm, opts.score || sampled !== undefined);
  const sn = sampled ? { ...opts.slmNeeds, topK: slm.vocabSize } : opts.slmNeeds;
  let s = await slm.begin(prompt, sn);
  let l = await llm.begin(prompt, ln);
  const steps: RoutedStep[] = [];
  for (let index = 0; index < opts.maxTokens; index++) {
    const features = keptFeatures(sampled ? asRouterSees(s, opts.slmNeeds) : s, index);
    const routed = policy({ features, slmTok: s.tokenId, llmTok: l.tokenId, index });
    const chosen = emitted(routed ? l : s, sampled, prompt.length + steps.length);
    if (slm.isEndOfGeneration(chosen)) break;
    const prob = opts.score ? probLookup(l) : null;
    const p = prob ? prob(chosen) : NaN;
    const softLabel = prob ? Math.min(1, prob(s.tokenId) / Math.max(prob(l.tokenId), 1e-12)) : NaN;
    steps.push({ slmTok: s.tokenId, llmTok: l.tokenId, chosen, routed, features, llmLogprob: Math.log(Math.max(p, 1e-12)), softLabel });
    if (index + 1 >= opts.maxTokens) break;
    if (prompt.length + steps.length >= Math.min(slm.contextSize, llm.contextSize) - 1) break;
    s = await slm.advance(chosen, sn);
    l = await llm.advance(chosen, ln);
  }
  return steps;
}
