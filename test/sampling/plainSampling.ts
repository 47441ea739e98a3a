/**
 * A model sampling alone, written plainly against node-llama-cpp (not through inference/sampling.ts):
 * at each position the penalised distribution over the whole vocabulary (temperature 0 with the
 * penalties, `probabilities: true`), then `sampleToken` with `uniformAt(seed, position)`. The oracle
 * of "at τ = 0 the answer is the SLM sampling alone" (and τ = 1, the LLM alone).
 */
import type { LlamaModel, Token } from "node-llama-cpp";
import { hasPenalties, penaltyWindow, sampleToken, uniformAt, type SamplingSettings } from "../../shared/sampling.js";

/** The whole vocabulary's (penalised) probabilities after `history`, most likely first. */
export async function distributionAfter(
  model: LlamaModel,
  history: readonly number[],
  s?: SamplingSettings,
): Promise<{ tokenId: number; weight: number }[]> {
  const context = await model.createContext({ contextSize: Math.max(64, history.length + 8), sequences: 1, threads: 1 });
  try {
    const seq = context.getSequence();
    const ids = history as Token[];
    const repeatPenalty =
      s && hasPenalties(s)
        ? {
            punishTokens: penaltyWindow(history, s) as Token[],
            maxPunishTokens: s.repeatLastN,
            penalty: s.repeatPenalty,
            presencePenalty: s.presencePenalty,
            frequencyPenalty: s.frequencyPenalty,
          }
        : undefined;
    const out = await seq.controlledEvaluate([
      ...ids.slice(0, -1),
      [ids[ids.length - 1]!, { generateNext: { probabilities: true, options: { temperature: 0, ...(repeatPenalty ? { repeatPenalty } : {}) } } }],
    ]);
    const probs = out[ids.length - 1]?.next?.probabilities;
    if (!probs) throw new Error("no probabilities");
    return [...probs].map(([tokenId, weight]) => ({ tokenId, weight }));
  } finally {
    await context.dispose();
  }
}

/** `maxTokens` tokens of `model` sampling alone after `prompt` (stops after an end-of-generation token, not included). */
export async function sampleAlone(model: LlamaModel, prompt: readonly number[], s: SamplingSettings, maxTokens: number): Promise<number[]> {
  const history = [...prompt];
  const out: number[] = [];
  while (out.length < maxTokens) {
    const cands = await distributionAfter(model, history, s);
    const token = sampleToken(cands, s, uniformAt(s.seed, history.length)).tokenId;
    if (model.isEogToken(token as Token)) break;
    out.push(token);
    history.push(token);
  }
  return out;
}
