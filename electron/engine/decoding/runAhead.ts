/**
 * Run-ahead with rollback: while the cloud answers a routed position, the SLM goes on as if its own
 * token there will stand (it does whenever the cloud agrees or fails). It evaluates that token and
 * keeps choosing its own tokens after it until the answer is in, the end of generation, or a bound.
 * A position the router sends to the cloud ends the run — unless it may be asked about at once, on
 * the guessed text (`pipelinedCalls.ts`). If the cloud then confirms each guess, these tokens are
 * exactly what the reference decoder would have produced after waiting (same prefix, same greedy SLM,
 * same router, the same LLM answers) and they are committed at once; from the first guess it
 * overrules, they are rolled back. The time the SLM would have spent waiting is spent on them instead.
 */
import type { TokenEvent } from "../../../shared/events.js";
import type { SlmStep } from "../../../inference/localModel.js";
import { wasRouted, type AnswerState } from "./answer.js";
import type { PipelinedCalls } from "./pipelinedCalls.js";
import { routedEvent, type Pending } from "./routed.js";

/** the run-ahead while the cloud mostly overrules the SLM's guesses */
const SHORT_RUN_AHEAD = 8;

/** A position the SLM guessed while an answer was awaited, and the pipelined call about it, if any. */
export interface Guess {
  event: TokenEvent;
  guess: number;
  pending: Pending | null;
}

export interface Guesses {
  guesses: Guess[];
  /** the SLM's step after the last guess */
  after: SlmStep;
}

/** The routed position being answered: the SLM's step there and its answer position. */
export interface RoutedStep {
  step: SlmStep;
  index: number;
}

/**
 * How far to run ahead: guessed tokens are kept only when the cloud confirms the guess, so while it
 * mostly overrules the SLM (`GuessPolicy`) a short run is enough to cover the common case and spares
 * the device's compute (and battery) — and, where the cloud shares the machine, the cloud's.
 */
export function runAheadLimit(answer: AnswerState, speculate: number): number {
  return answer.learnt.guesses.pipeline ? speculate : Math.min(speculate, SHORT_RUN_AHEAD);
}

/** Runs ahead of `routed` while `pending` is awaited, at most `limit` tokens; `pipeline` asks pipelined calls (null: none). */
export async function runAhead(
  answer: AnswerState,
  routed: RoutedStep,
  pending: Pending,
  limit: number,
  pipeline: PipelinedCalls | null,
): Promise<Guesses> {
  const guesses: Guess[] = [];
  let after = await answer.slm.advance(routed.step.tokenId, answer.needs);
  // go on while an answer is awaited and none has overruled a guess yet: every token made meanwhile
  // is time the decoder would otherwise spend waiting
  const waiting = () =>
    (!pending.settled || guesses.some((g) => g.pending && !g.pending.settled)) &&
    !pending.overrules(routed.step.tokenId) &&
    !guesses.some((g) => g.pending?.overrules(g.guess));
  while (waiting() && guesses.length < limit && !answer.signal?.aborted) {
    const event = answer.decide(after, routed.index + 1 + guesses.length);
    if (answer.slm.isEndOfGeneration(after.tokenId)) break;
    const guess: Guess = { event, guess: after.tokenId, pending: null };
    if (wasRouted(event)) {
      // that position must wait for this answer, unless it may be asked about now
      guess.pending = pipeline?.ask([routed.step.tokenId, ...guesses.map((g) => g.guess)], event) ?? null;
      if (!guess.pending) break;
    }
    guesses.push(guess);
    after = await answer.slm.advance(guess.guess, answer.needs);
  }
  return { guesses, after };
}

/**
 * Commits what the cloud confirms of the run-ahead (the first guess, at the routed position, is
 * confirmed already): each pipelined call's answer is awaited in order; one that agrees with the
 * guess (or fails: the SLM's own token stands then, as it would for the reference decoder) keeps the
 * run going, the first that overrules it ends the run with the cloud's token there, and the SLM's
 * guesses after it are rolled back. `committedLength` is the committed length before the routed
 * position. Resolves to the events to commit and the SLM's step after them (null after an overruled
 * guess), or null when aborted.
 */
export async function settleGuesses(
  answer: AnswerState,
  ahead: Guesses,
  committedLength: number,
): Promise<{ events: TokenEvent[]; after: SlmStep | null } | null> {
  const events: TokenEvent[] = [];
  for (const [i, g] of ahead.guesses.entries()) {
    if (!g.pending) {
      events.push(g.event);
      continue;
    }
    const result = await g.pending.result;
    if (result.kind === "aborted") return null;
    const event = routedEvent(g.event, result);
    events.push(event);
    if (event.origin !== "cloud") continue;
    answer.learnt.guesses.observe(event.tokenId === g.guess);
    if (event.tokenId !== g.guess) {
      await answer.slm.rollback(committedLength + 1 + i);
      return { events, after: null };
    }
  }
  return { events, after: ahead.after };
}
