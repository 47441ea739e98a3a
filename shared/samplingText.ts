/**
 * Sampling settings in words, one definition for every place a person reads them: the sampling panel,
 * the inspector and the Markdown export. Environment-neutral (the renderer imports it).
 */
import { isGreedy, presetOf, type SamplingParams, type SamplingSettings } from "./sampling.js";

export const PRESET_LABELS = { precise: "Precise", balanced: "Balanced", creative: "Creative", custom: "Custom" } as const;

/** The parameters that are not off, e.g. "temperature 0.7 · top-k 20 · top-p 0.8 · repetition penalty 1.05 over 64 tokens". */
export function describeParams(p: SamplingParams): string {
  if (isGreedy(p)) {
    const pen = penalties(p);
    return ["greedy (temperature 0)", ...pen].join(" · ");
  }
  const parts = [`temperature ${p.temperature}`];
  if (p.topK > 0) parts.push(`top-k ${p.topK}`);
  if (p.topP < 1) parts.push(`top-p ${p.topP}`);
  if (p.minP > 0) parts.push(`min-p ${p.minP}`);
  return [...parts, ...penalties(p)].join(" · ");
}

function penalties(p: SamplingParams): string[] {
  if (p.repeatLastN === 0) return [];
  const out: string[] = [];
  if (p.repeatPenalty !== 1) out.push(`repetition penalty ${p.repeatPenalty}`);
  if (p.presencePenalty !== 0) out.push(`presence penalty ${p.presencePenalty}`);
  if (p.frequencyPenalty !== 0) out.push(`frequency penalty ${p.frequencyPenalty}`);
  if (out.length) out[out.length - 1] += ` over ${p.repeatLastN} tokens`;
  return out;
}

/** What one answer was sampled with, enough to reproduce it: "Balanced: temperature 0.7 · … · seed 42". */
export function describeSettings(s: SamplingSettings): string {
  return `${PRESET_LABELS[presetOf(s)]}: ${describeParams(s)} · seed ${s.seed}`;
}
