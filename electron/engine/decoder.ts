/**
 * The collaborative decoder: where every token of an answer is chosen. What it computes is the
 * reference decoder's (`decoding/reference.ts`, a few dozen lines: step → router → the SLM's token,
 * or the cloud's from a call → commit); this one computes it sooner, hiding the network:
 *
 *   background sync      the cloud client keeps the server's copy current (CloudPeer.observe, told by
 *                        the token source at every commit), so a call costs one LLM step + the round trip
 *   token sources        the token at a routed position from a call (`decoding/callSource.ts`) or from
 *                        the cloud replica's stream (`decoding/replicaSource.ts`)
 *   run-ahead            the SLM goes on on its own guess while an answer is awaited, rolled back if the
 *                        cloud overrules it (`decoding/runAhead.ts`)
 *   pipelined calls      routed positions of the guessed text asked about at once (`decoding/pipelinedCalls.ts`)
 *   continuations        a call brings back the LLM's next tokens, taken where the reference decoder would
 *                        have produced them (`decoding/continuations.ts`)
 *
 * Each is chosen by an option, and the identity tests check each against the reference decoder.
 * Answers stream as an async iterable of TokenEvents; `summary` resolves when the answer ends.
 */
import type { AnswerSummary, TokenEvent } from "../../shared/events.js";
import type { Router } from "../../shared/router.js";
import type { LocalModel, SlmStep } from "../../inference/localModel.js";
import type { CloudPeer } from "./cloud/peer.js";
import { AnswerState, wasRouted, type AnswerOptions } from "./decoding/answer.js";
import { CallSource, NoCloud } from "./decoding/callSource.js";
import { acceptContinuation, usableContinuation, type Verified } from "./decoding/continuations.js";
import { ReplicaSource } from "./decoding/replicaSource.js";
import { routedEvent, type TokenSource } from "./decoding/routed.js";
import { runAhead, runAheadLimit, settleGuesses } from "./decoding/runAhead.js";

export { MAX_PIPELINED_CALLS } from "./decoding/pipelinedCalls.js";

export interface GenerateOptions extends AnswerOptions {
  /** the threshold, read before every token: a function lets τ change mid-answer */
  tau: number | (() => number);
  maxTokens: number;
  /**
   * How many tokens the SLM may run ahead on its own guess while a cloud call is in flight, rolled
   * back if the cloud disagrees (0 = wait idle). The tokens and origins are the same either way; only
   * the time differs. Default 32: the run stops anyway when the answers are in, so the bound matters
   * only for an SLM that writes many tokens per round trip.
   */
  speculate?: number;
  /**
   * Most tokens of the LLM's continuation to ask for with a cloud call (0 = none). Each costs the
   * server one more LLM step before it answers; each accepted where the router would have gone to the
   * cloud again saves a round trip: `ContinuationPolicy` decides when to ask. Same tokens and origins
   * either way. Default 4.
   */
  continuation?: number;
  /** @deprecated the old name of `continuation` (the wire's: NextRequest.draft), read when that is absent */
  draft?: number;
  /**
   * While running ahead, ask the cloud about the routed positions of the guessed text too, when the
   * cloud has lately been confirming the SLM's guesses (`GuessPolicy`). Default true; false = never.
   */
  pipeline?: boolean;
  /**
   * Follow the cloud's replica of this SLM and router when it has one (`ReplicaSource`): one round
   * trip for a stretch of routed positions. Default true. Same tokens and origins either way.
   */
  replica?: boolean;
}

export const DEFAULT_SPECULATION = 32;
export const DEFAULT_CONTINUATION = 4;

export interface Answer extends AsyncIterable<TokenEvent> {
  /** resolves when the answer has ended (after the iterator finishes) */
  readonly summary: Promise<AnswerSummary>;
}

/** What one routed position settles: its event, the events decided with it, and the SLM's step after them (null: step on the last). */
interface Settled {
  events: TokenEvent[];
  after: SlmStep | null;
}

export class CollaborativeDecoder {
  constructor(
    readonly slm: LocalModel,
    readonly router: Router,
    /** the cloud, or null when none is configured (routed tokens then fall back to the SLM) */
    readonly cloud: CloudPeer | null,
  ) {}

  generate(prompt: readonly number[], opts: GenerateOptions): Answer {
    let resolveSummary!: (s: AnswerSummary) => void;
    let rejectSummary!: (e: unknown) => void;
    const summary = new Promise<AnswerSummary>((res, rej) => {
      resolveSummary = res;
      rejectSummary = rej;
    });
    summary.catch(() => {}); // the iterator rethrows the same error; don't report it twice as unhandled
    const run = this.run(prompt, opts, resolveSummary);
    return {
      summary,
      [Symbol.asyncIterator]: () => {
        const it = run[Symbol.asyncIterator]();
        return {
          next: async () => {
            try {
              return await it.next();
            } catch (err) {
              rejectSummary(err);
              throw err;
            }
          },
          // the consumer stopped iterating early: end the answer as aborted, releasing the SLM
          return: async () => it.return!(undefined),
        };
      },
    };
  }

  /** The token source the options choose: the replica's stream where the cloud has one, else a call per position. */
  private source(opts: GenerateOptions): { source: TokenSource; calls: CallSource | null } {
    if (!this.cloud) return { source: new NoCloud(), calls: null };
    const calls = new CallSource(this.cloud);
    const replica = this.cloud.route && this.router.replica && opts.replica !== false;
    return { source: replica ? new ReplicaSource(this.cloud, this.router, calls) : calls, calls };
  }

  private async *run(
    prompt: readonly number[],
    opts: GenerateOptions,
    done: (s: AnswerSummary) => void,
  ): AsyncGenerator<TokenEvent, void, undefined> {
    const { source, calls } = this.source(opts);
    const answer = new AnswerState(this.slm, this.router, this.cloud, source, opts);
    let failed = false;
    try {
      if (opts.signal?.aborted) return;
      let step = await answer.begin(prompt);
      let index = 0;
      while (index < opts.maxTokens) {
        if (opts.signal?.aborted) return;
        const event = answer.decide(step, index);
        const settled = wasRouted(event) ? await this.routed(answer, step, event, opts, calls) : { events: [event], after: null };
        if (settled === null) return; // aborted while waiting on the cloud
        for (const e of settled.events) {
          const r = answer.commit(e);
          if (r === "eog") {
            answer.stopReason = "eog";
            return;
          }
          yield e;
          if (r === "stop") {
            answer.stopReason = "stop-string";
            return;
          }
          index++;
        }
        if (index >= opts.maxTokens) break; // don't pay for a step nobody reads
        if (answer.committedLength >= this.slm.contextSize) {
          answer.stopReason = "context-full";
          return;
        }
        step = settled.after ?? (await this.slm.advance(answer.lastEvent!.tokenId, answer.needs));
      }
      answer.stopReason = "max-tokens";
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      const summary = answer.finish();
      if (!failed) done(summary);
    }
  }

  /**
   * A position the router sends to the cloud: asks the token source, runs ahead while the answer is
   * on its way, then settles the guesses and takes what it can of a continuation. Null when aborted.
   */
  private async routed(
    answer: AnswerState,
    step: SlmStep,
    local: TokenEvent,
    opts: GenerateOptions,
    calls: CallSource | null,
  ): Promise<Settled | null> {
    const { index } = local;
    const committedLength = answer.committedLength;
    const room = Math.min(opts.maxTokens - index - 1, this.slm.contextSize - committedLength - 2);
    const previous = answer.lastEvent;
    const pending = answer.source.ask({
      history: answer.committed,
      position: index,
      tau: local.tau,
      room,
      continuation: Math.min(Math.max(0, Math.floor(opts.continuation ?? opts.draft ?? DEFAULT_CONTINUATION)), room),
      previousRouted: previous !== undefined && wasRouted(previous),
      signal: opts.signal,
      sampling: opts.sampling,
    });
    const speculate = Math.max(0, Math.floor(opts.speculate ?? DEFAULT_SPECULATION));
    const pipeline = opts.pipeline !== false && pending.pipelinable ? calls : null;
    const guessed =
      Math.min(speculate, room) > 0 && !pending.ready
        ? await runAhead(answer, { step, index }, pending, Math.min(runAheadLimit(answer, speculate), room), pipeline)
        : null;
    const result = await pending.result;
    if (result.kind === "aborted") return null;
    const event = routedEvent(local, result);
    if (event.origin === "cloud") answer.learnt.guesses.observe(event.tokenId === step.tokenId);
    let ahead: Settled | null = null;
    if (guessed && event.tokenId !== step.tokenId) {
      // the cloud overruled the SLM's guess: forget the guessed tokens, as if never evaluated
      await this.slm.rollback(committedLength);
    } else if (guessed) {
      ahead = await settleGuesses(answer, guessed, committedLength);
      if (ahead === null) return null; // aborted while waiting on the cloud
    }
    // a continuation is read right after the cloud's token, or after plain guesses: with a pipelined
    // call among them, the text after it is that call's to answer
    const plain = ahead === null || (!guessed?.guesses.some((g) => g.pending) && ahead.after !== null);
    const continuation = plain && result.kind === "cloud" ? usableContinuation(result.continuation, ahead?.events ?? [], room) : [];
    let verified: Verified | null = null;
    if (continuation.length > 0) {
      const token = { tokenId: event.tokenId, index, committedLength };
      verified = await acceptContinuation(answer, token, ahead as { events: TokenEvent[]; after: SlmStep } | null, continuation);
    }
    return {
      events: [event, ...(ahead?.events ?? []), ...(verified?.events ?? [])],
      after: verified ? verified.after : (ahead?.after ?? null),
    };
  }
}
