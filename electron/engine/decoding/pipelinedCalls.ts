/**
 * Pipelined calls: while the SLM runs ahead on its guess (`runAhead.ts`), a routed position it meets
 * on the guessed text is asked about at once, so several routed tokens share one wait. The answer
 * counts only if the cloud confirms every earlier guess, so this is done only while the cloud has
 * lately been confirming the SLM's guesses (`GuessPolicy`), and for a few positions at a time.
 */
import type { TokenEvent } from "../../../shared/events.js";
import type { AnswerState } from "./answer.js";
import type { Pending, TokenSource } from "./routed.js";

/**
 * Most calls one run-ahead pipelines after the call it waits on: each one waits on the server behind
 * the others (and a server bounds a session's queue, 8 requests by default), and each is wasted if an
 * earlier guess is overruled.
 */
export const MAX_PIPELINED_CALLS = 3;

/** The pipelined calls of one run-ahead, asked through `calls` (the answer's call per position). */
export class PipelinedCalls {
  private asked = 0;

  constructor(
    private readonly answer: AnswerState,
    private readonly calls: TokenSource,
  ) {}

  /**
   * The call about the routed guessed position `event`, after the committed tokens and `guessed` (the
   * routed position's guess and the guesses after it); null when it must wait for the answers before it.
   */
  ask(guessed: readonly number[], event: TokenEvent): Pending | null {
    if (!this.answer.learnt.guesses.pipeline || this.asked >= MAX_PIPELINED_CALLS) return null;
    this.asked++;
    return this.calls.ask({
      history: [...this.answer.committed, ...guessed],
      position: event.index,
      tau: event.tau,
      room: 0,
      continuation: 0, // the text after it is the next call's to answer
      previousRouted: false,
      signal: this.answer.signal,
      sampling: this.answer.sampling,
    });
  }
}
