/**
 * Continuations: a call brings back a short continuation of the LLM's after its token (the wire's
 * `draft`), and the positions after it are decided from it without calls of their own wherever the
 * reference decoder would have produced the same tokens — so clustered cloud positions cost one round
 * trip instead of one each. When to ask for one is learnt per cloud (`ContinuationPolicy`).
 */
import type { TokenEvent } from "../../../shared/events.js";
import type { SlmStep } from "../../../inference/localModel.js";
import { wasRouted, type AnswerState } from "./answer.js";
import { routedEvent } from "./routed.js";

export interface Verified {
  events: TokenEvent[];
  /** the SLM's step after them; null when the continuation stopped applying (the SLM must read the last event first) */
  after: SlmStep | null;
}

/**
 * The part of a continuation that follows the run-ahead tokens, if it agrees with them (each of them
 * is the SLM's own token at a position the router kept, so a continuation that differs there was
 * written after other text and says nothing about what follows), capped at `room` tokens in all.
 */
export function usableContinuation(continuation: readonly number[], ahead: readonly TokenEvent[], room: number): readonly number[] {
  for (let i = 0; i < ahead.length; i++) if (continuation[i] !== ahead[i]!.tokenId) return [];
  return continuation.slice(ahead.length, Math.max(ahead.length, room));
}

/**
 * Takes what it can of the LLM's continuation `tokens` after the committed `token` (and the run-ahead
 * tokens `ahead` holds, which the continuation agrees with): the tokens the reference decoder would
 * have produced anyway. At each position, the SLM is evaluated on the continuation so far (one batch
 * for all of it) and the router decides that step as it would have: a position it sends to the cloud
 * gets the LLM's token from the continuation — the LLM's token after exactly this history (greedy,
 * or drawn with the number keyed by its position), what a call would have returned — and a position it keeps gets the SLM's own token, which continues
 * the verified run only while it equals the continuation's. The first position where they differ ends
 * the run with the SLM's token. `committedLength` is the committed length before `token`, `index` its
 * answer position.
 */
export async function acceptContinuation(
  answer: AnswerState,
  token: { tokenId: number; index: number; committedLength: number },
  ahead: { events: TokenEvent[]; after: SlmStep } | null,
  tokens: readonly number[],
): Promise<Verified> {
  const skipped = ahead?.events.length ?? 0;
  const steps = await continuationSteps(answer, token.tokenId, ahead?.after ?? null, tokens);
  const events: TokenEvent[] = [];
  for (let j = 0; j < tokens.length; j++) {
    const at = await steps.at(j);
    let event = answer.decide(at, token.index + 1 + skipped + j);
    if (wasRouted(event)) {
      // the server sends a continuation's tokens without log-probabilities
      event = routedEvent(event, {
        kind: "cloud",
        tokenId: tokens[j]!,
        latencyMs: null,
        verdict: { tokenId: tokens[j]!, top: [], fromDraft: true },
        continuation: [],
      });
    } else if (at.tokenId !== tokens[j]) {
      // the reference decoder keeps the SLM's token here; the continuation no longer applies
      events.push(event);
      await steps.undo(token.committedLength + 1 + skipped + j);
      return { events, after: null };
    }
    events.push(event);
    if (answer.slm.isEndOfGeneration(event.tokenId)) return { events, after: null }; // the answer ends here
  }
  return { events, after: await steps.at(tokens.length) };
}

/**
 * The SLM's step at each continuation position (`at(j)`: after `token` and tokens[0..j)), and after
 * the last: from one batch, unless the router reads the hidden state, which llama.cpp exposes for the
 * last row of a decode only — then one token at a time, which costs no more than decoding them would
 * have (and stops at the first miss). `first` is the step after `token` when it is known already.
 */
async function continuationSteps(answer: AnswerState, token: number, first: SlmStep | null, tokens: readonly number[]) {
  const { slm, needs } = answer;
  const batch = needs.hidden ? null : await slm.evaluateAll(first ? tokens : [token, ...tokens], needs);
  let current: SlmStep = first ?? (batch ? batch[0]! : await slm.advance(token, needs));
  let reached = 0;
  return {
    at: async (j: number): Promise<SlmStep> => {
      if (batch) return j === 0 ? current : batch[first ? j - 1 : j]!;
      for (; reached < j; reached++) current = await slm.advance(tokens[reached]!, needs);
      return current;
    },
    /** forgets the batch's tokens from `length` on (stepping one at a time went no further) */
    undo: async (length: number): Promise<void> => {
      if (batch) await slm.rollback(length);
    },
  };
}
