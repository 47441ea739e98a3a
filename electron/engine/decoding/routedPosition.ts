/**
 * A position the router sends to the cloud, as the collaborative decoder settles it, in named steps:
 *
 *   ask           the answer's token source (`Hiding.source`) for the token there
 *   run ahead     the SLM goes on on its own guess while the answer is on its way (`runAhead.ts`),
 *                 asking pipelined calls about routed guessed positions (`pipelinedCalls.ts`)
 *   answered      the token event from what the source said (`routed.ts`)
 *   keep guesses  the guesses the cloud confirms are kept, the rest rolled back (`runAhead.ts`)
 *   continuation  what the reference decoder would take of the LLM's continuation (`continuations.ts`)
 *
 * Each step does nothing where the answer's `Hiding` turns its mechanism off, which leaves the
 * reference decoder's blocking call.
 */
import type { TokenEvent } from "../../../shared/events.js";
import type { SlmStep } from "../../../inference/localModel.js";
import { wasRouted, type AnswerState } from "./answer.js";
import { acceptContinuation, usableContinuation, type Verified } from "./continuations.js";
import type { Hiding } from "./hiding.js";
import { PipelinedCalls } from "./pipelinedCalls.js";
import { routedEvent, type Answered, type Pending } from "./routed.js";
import { runAhead, runAheadLimit, settleGuesses, type Guesses } from "./runAhead.js";

/** What a routed position settles: its event and the events decided with it, and the SLM's step after them (null: step on the last). */
export interface Settled {
  events: TokenEvent[];
  after: SlmStep | null;
}

export class RoutedPosition {
  private readonly index: number;
  /** the committed length before this position: where a rollback returns to */
  private readonly committedLength: number;
  /** answer positions left after this one (bounded by the context too) */
  private readonly room: number;

  constructor(
    private readonly answer: AnswerState,
    private readonly hiding: Hiding,
    /** the SLM's step at this position (its token is the guess run-ahead goes on from) */
    private readonly step: SlmStep,
    /** the SLM's own token's event here, which the router sent to the cloud */
    private readonly local: TokenEvent,
    maxTokens: number,
  ) {
    this.index = local.index;
    this.committedLength = answer.committedLength;
    this.room = Math.min(maxTokens - this.index - 1, answer.slm.contextSize - this.committedLength - 2);
  }

  /** The events this position settles, starting with its own; null when aborted while waiting on the cloud. */
  async settle(): Promise<Settled | null> {
    const pending = this.ask();
    const guessed = await this.runAhead(pending);
    const result = await pending.result;
    if (result.kind === "aborted") return null;
    const event = this.answered(result);
    const kept = guessed ? await this.keepGuesses(guessed, event) : null;
    if (kept === "aborted") return null;
    const verified = await this.continuation(event, result, guessed, kept);
    return {
      events: [event, ...(kept?.events ?? []), ...(verified?.events ?? [])],
      after: verified ? verified.after : (kept?.after ?? null),
    };
  }

  private ask(): Pending {
    const previous = this.answer.lastEvent;
    return this.answer.source.ask({
      history: this.answer.committed,
      position: this.index,
      tau: this.local.tau,
      room: this.room,
      continuation: Math.min(this.hiding.continuation, this.room),
      previousRouted: previous !== undefined && wasRouted(previous),
      signal: this.answer.signal,
      sampling: this.answer.sampling,
    });
  }

  /** The SLM's guesses while `pending` is awaited; null when it waits idle (off, no room, or the answer is in). */
  private async runAhead(pending: Pending): Promise<Guesses | null> {
    const { speculate } = this.hiding;
    if (Math.min(speculate, this.room) <= 0 || pending.ready) return null;
    const limit = Math.min(runAheadLimit(this.answer, speculate), this.room);
    const pipeline = this.hiding.pipeline && pending.pipelinable ? new PipelinedCalls(this.answer, this.hiding.pipeline) : null;
    return runAhead(this.answer, { step: this.step, index: this.index }, pending, limit, pipeline);
  }

  /** This position's event; the cloud's verdict on the SLM's guess here is learnt from. */
  private answered(result: Answered): TokenEvent {
    const event = routedEvent(this.local, result);
    if (event.origin === "cloud") this.answer.learnt.guesses.observe(event.tokenId === this.step.tokenId);
    return event;
  }

  /** The run-ahead the cloud confirms (null: overruled here, so all of it forgotten, as if never evaluated). */
  private async keepGuesses(guessed: Guesses, event: TokenEvent): Promise<Settled | null | "aborted"> {
    if (event.tokenId !== this.step.tokenId) {
      await this.answer.slm.rollback(this.committedLength);
      return null;
    }
    return (await settleGuesses(this.answer, guessed, this.committedLength)) ?? "aborted";
  }

  /**
   * What can be taken of the call's continuation: it is read right after the cloud's token, or after
   * plain guesses; with a pipelined call among the guesses, the text after it is that call's to answer.
   */
  private async continuation(event: TokenEvent, result: Answered, guessed: Guesses | null, kept: Settled | null): Promise<Verified | null> {
    const plain = kept === null || (!guessed?.guesses.some((g) => g.pending) && kept.after !== null);
    if (!plain || result.kind !== "cloud") return null;
    const continuation = usableContinuation(result.continuation, kept?.events ?? [], this.room);
    if (continuation.length === 0) return null;
    const token = { tokenId: event.tokenId, index: this.index, committedLength: this.committedLength };
    return acceptContinuation(this.answer, token, kept as { events: TokenEvent[]; after: SlmStep } | null, continuation);
  }
}
