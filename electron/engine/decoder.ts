/**
 * The collaborative decoder: where every token of an answer is chosen. What it computes is the
 * reference decoder's (`decoding/reference.ts`, a few dozen lines: step → router → the SLM's token,
 * or the cloud's from a call → commit), and its loop is the reference's: the SLM's step, the router's
 * decision (`AnswerState.decide`), the token, the commit. Only a routed position differs: instead of
 * a blocking call it is settled by a `RoutedPosition` (`decoding/routedPosition.ts`), whose named
 * steps each delegate to the file of one way of hiding the network:
 *
 *   ask            a `TokenSource` (`decoding/routed.ts`) gives the token: a call per position
 *                  (`callSource.ts`, whose peer syncs the server's copy in the background), the cloud
 *                  replica's stream (`replicaSource.ts`), or none (`NoCloud`: the SLM's, marked fallback)
 *   run ahead      meanwhile the SLM goes on on its own guess (`runAhead.ts`), asking pipelined calls
 *                  about the routed positions it meets (`pipelinedCalls.ts`)
 *   keep guesses   the guesses the cloud confirms are committed, the rest rolled back (`runAhead.ts`)
 *   continuation   the LLM's next tokens a call brought back, taken where the reference decoder would
 *                  have produced them (`continuations.ts`)
 *
 * Which of these an answer uses is resolved once from its options (`decoding/hiding.ts`: `Hiding`);
 * with all of them off a routed position is the reference's blocking call. The token source is the
 * one interface the cloud is reached through; run-ahead, pipelined calls and continuations are not
 * sources but what the decoder does around one (run-ahead is the SLM's work while it waits, and
 * pipelined calls are asked through the same call source), so they are steps, not implementations.
 * The identity tests check each option against the reference decoder. Answers stream as an async
 * iterable of TokenEvents; `summary` resolves when the answer ends.
 */
import type { AnswerSummary, TokenEvent } from "../../shared/events.js";
import type { Router } from "../../shared/router.js";
import type { LocalModel } from "../../inference/localModel.js";
import type { CloudPeer } from "./cloud/peer.js";
import { AnswerState, wasRouted, type AnswerOptions } from "./decoding/answer.js";
import { resolveHiding, type HidingOptions } from "./decoding/hiding.js";
import { RoutedPosition, type Settled } from "./decoding/routedPosition.js";

export interface GenerateOptions extends AnswerOptions, HidingOptions {
  /** the threshold, read before every token: a function lets τ change mid-answer */
  tau: number | (() => number);
  maxTokens: number;
}

export interface Answer extends AsyncIterable<TokenEvent> {
  /** resolves when the answer has ended (after the iterator finishes) */
  readonly summary: Promise<AnswerSummary>;
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

  private async *run(
    prompt: readonly number[],
    opts: GenerateOptions,
    done: (s: AnswerSummary) => void,
  ): AsyncGenerator<TokenEvent, void, undefined> {
    const hiding = resolveHiding(this.cloud, this.router, opts);
    const answer = new AnswerState(this.slm, this.router, this.cloud, hiding.source, opts);
    let failed = false;
    try {
      if (opts.signal?.aborted) return;
      let step = await answer.begin(prompt);
      let index = 0;
      while (index < opts.maxTokens) {
        if (opts.signal?.aborted) return;
        const event = answer.decide(step, index);
        // a kept token is committed as it is; a routed one is settled with what the hiding decided meanwhile
        const settled: Settled | null = wasRouted(event)
          ? await new RoutedPosition(answer, hiding, step, event, opts.maxTokens).settle()
          : { events: [event], after: null };
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
}
