/**
 * What each router feature costs per SLM step, measured on the loaded SLM (the issue asks for the
 * cost of each feature; on Qwen's 152k vocabulary the top-k path is the expensive one — docs/FACTS.md).
 * Steps are greedy continuations from `prompt`, the same work the engine does per token.
 */
import type { LocalModel } from "../inference/localModel.js";
import type { FeatureNeeds } from "../shared/router.js";

export interface FeatureCost {
  name: string;
  needs: FeatureNeeds;
  msPerStep: number;
}

export async function measureFeatureCost(slm: LocalModel, prompt: readonly number[], steps = 150, topK = 8): Promise<FeatureCost[]> {
  const variants: [string, FeatureNeeds][] = [
    ["greedy token only", { top1Prob: false, topK: 0, hidden: false }],
    ["+ top-1 probability", { top1Prob: true, topK: 0, hidden: false }],
    ["+ hidden state", { top1Prob: true, topK: 0, hidden: true }],
    [`+ top-${topK} (margin, entropy)`, { top1Prob: true, topK, hidden: true }],
  ];
  const out: FeatureCost[] = [];
  for (const [name, needs] of variants) {
    let s = await slm.begin(prompt, needs);
    const t0 = performance.now();
    let n = 0;
    for (; n < steps && prompt.length + n < slm.contextSize - 2; n++) {
      const next = slm.isEndOfGeneration(s.tokenId) ? prompt[prompt.length - 1]! : s.tokenId;
      s = await slm.advance(next, needs);
    }
    out.push({ name, needs, msPerStep: (performance.now() - t0) / Math.max(1, n) });
  }
  return out;
}
