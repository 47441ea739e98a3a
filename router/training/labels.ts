/**
 * CITER-style labels: is the SLM's greedy token acceptable at this position (1), or does the position
 * need the LLM (0)?
 *
 * Rules, along a reference continuation (teacher forcing):
 *   1. SLM greedy == reference                       → 1 "slm-matches"
 *   2. else LLM greedy == reference                  → 0 "llm-matches"
 *   3. both differ, the task has a checkable answer  → roll out with each choice and check:
 *        the SLM's choice leads to a correct answer  → 1; else → 0 "rollout"
 *        (neither correct → 0: nothing shows the SLM's token is acceptable, and the LLM is the better
 *        bet on the rest of the answer)
 *   4. both differ, nothing to check                 → ask the LLM as judge: 1 when it gives the SLM's
 *        token at least the probability of the reference token, else 0 "llm-judge"
 * With the LLM's own greedy continuations as references (our default), rule 2 always settles what
 * rule 1 does not: the label is "SLM greedy == LLM greedy" — which is also the oracle's definition.
 *
 * On routed trajectories (CITER's second iteration) the reference at each visited state is the LLM's
 * greedy token there, so the same rules apply to states the routed decoder actually reaches.
 */
export type LabelRule = "slm-matches" | "llm-matches" | "rollout" | "llm-judge";

export interface LabelInput {
  slmTok: number;
  llmTok: number;
  refTok: number;
  /** outcome of rollouts when the task is checkable */
  rollout?: { slmCorrect: boolean; llmCorrect: boolean };
  /** LLM probabilities, for rule 4 */
  llmProb?: (token: number) => number;
}

export function labelPosition(p: LabelInput): { label: 0 | 1; rule: LabelRule } {
  if (p.slmTok === p.refTok) return { label: 1, rule: "slm-matches" };
  if (p.llmTok === p.refTok) return { label: 0, rule: "llm-matches" };
  if (p.rollout) return { label: p.rollout.slmCorrect ? 1 : 0, rule: "rollout" };
  if (!p.llmProb)
    throw new Error("labelPosition: both models differ from the reference and neither a rollout nor LLM probabilities are available");
  return { label: p.llmProb(p.slmTok) >= p.llmProb(p.refTok) ? 1 : 0, rule: "llm-judge" };
}

/**
 * The oracle's routing decision: it knows both models' greedy tokens and routes only where they
 * differ, spending at most `share` of the tokens (a running budget: credit grows by `share` per token
 * and a routed token costs 1), so it has a point at every cloud share.
 */
export class OracleBudget {
  private credit = 0;
  constructor(readonly share: number) {}
  route(slmTok: number, llmTok: number): boolean {
    this.credit += this.share;
    if (slmTok === llmTok || this.credit < 1 - 1e-9) return false;
    this.credit -= 1;
    return true;
  }
}

/**
 * Teacher-forced oracle at a budget over a set of positions: routes the disagreeing positions, at most
 * round(share·n) of them. Agreement = (agreeing positions + routed) / n.
 */
export function oracleAgreement(disagree: readonly boolean[], share: number): { agreement: number; routed: number } {
  const n = disagree.length;
  if (n === 0) return { agreement: NaN, routed: 0 };
  const nDis = disagree.filter(Boolean).length;
  const routed = Math.min(nDis, Math.round(share * n));
  return { agreement: (n - nDis + routed) / n, routed };
}
