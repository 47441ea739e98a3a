/**
 * The collaborative decoder: where every token of an answer is chosen.
 *
 *   SLM step → router confidence → (confidence ≥ τ) the SLM's greedy token           origin "local"
 *                                → (confidence < τ) the cloud LLM's greedy token      origin "cloud"
 *                                                   or, if that call fails/times out,
 *                                                   the SLM's greedy token            origin "fallback"
 *   → the chosen token is fed back to the SLM (its KV cache holds the committed history) → next step.
 *
 * Answers stream as an async iterable of TokenEvents; `summary` resolves when the answer ends.
 */
import type { AnswerSummary, Candidate, StopReason, TokenEvent } from "../../shared/events.js";
import { countOrigins } from "../../shared/events.js";
import { routesToCloud, validateTau, type FeatureNeeds, type Router, type RouterFeatures } from "../../shared/router.js";
import { CloudCallError, type CloudPeer } from "./cloud/peer.js";
import type { LocalModel, SlmStep } from "./localModel.js";
import { TokenTextStream } from "./textStream.js";

export interface GenerateOptions {
  /** the threshold, read before every token: a function lets τ change mid-answer */
  tau: number | (() => number);
  maxTokens: number;
  stop?: readonly string[];
  signal?: AbortSignal;
  /** SLM candidates to attach to each event for the inspector (costly on large vocabularies) */
  topK?: number;
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
          return: async () => {
            // the consumer stopped iterating early: end the answer as aborted, releasing the SLM
            const r = await it.return!(undefined);
            return r;
          },
        };
      },
    };
  }

  private async *run(
    prompt: readonly number[],
    opts: GenerateOptions,
    done: (s: AnswerSummary) => void,
  ): AsyncGenerator<TokenEvent, void, undefined> {
    const t0 = performance.now();
    const tauOf = typeof opts.tau === "function" ? opts.tau : () => opts.tau as number;
    const needs: FeatureNeeds = {
      top1Prob: this.router.needs.top1Prob,
      topK: Math.max(this.router.needs.topK, opts.topK ?? 0),
      hidden: this.router.needs.hidden,
    };
    const stream = new TokenTextStream((t, last) => this.slm.detokenize(t, last), opts.stop ?? []);
    const history = [...prompt];
    const events: TokenEvent[] = [];
    const cloudBytesAtStart = this.cloud ? { up: this.cloud.stats.bytesUp, down: this.cloud.stats.bytesDown } : { up: 0, down: 0 };
    // an answer that ends any other way than those set below was stopped by its consumer
    let stopReason: StopReason = "abort";
    let lastEvent: TokenEvent | undefined;
    let failed = false;

    const finish = (): AnswerSummary => {
      const counts = countOrigins(events);
      const elapsedMs = performance.now() - t0;
      return {
        ...counts,
        bytesUp: this.cloud ? this.cloud.stats.bytesUp - cloudBytesAtStart.up : 0,
        bytesDown: this.cloud ? this.cloud.stats.bytesDown - cloudBytesAtStart.down : 0,
        tokensPerSecond: elapsedMs > 0 ? (counts.tokens * 1000) / elapsedMs : 0,
        text: stream.text,
        stopReason,
        router: this.router.name,
        elapsedMs,
      };
    };

    try {
      if (opts.signal?.aborted) return;
      let step: SlmStep = await this.slm.begin(prompt, needs);
      for (let index = 0; index < opts.maxTokens; index++) {
        if (opts.signal?.aborted) return;
        const tau = validateTau(tauOf());
        const confidence = this.router.score(featuresOf(step));
        const event = await this.choose(step, confidence, tau, index, history, opts.signal);
        if (event === null) return; // aborted while waiting on the cloud
        if (this.slm.isEndOfGeneration(event.tokenId)) {
          stopReason = "eog";
          return;
        }
        history.push(event.tokenId);
        const released = stream.push(event.tokenId);
        event.text = released.text;
        if (released.stopped) stopReason = "stop-string";
        events.push(event);
        lastEvent = event;
        yield event;
        if (released.stopped) return;
        if (index + 1 >= opts.maxTokens) break; // don't pay for a step nobody reads
        if (history.length >= this.slm.contextSize) {
          stopReason = "context-full";
          return;
        }
        step = await this.slm.advance(event.tokenId, needs);
      }
      stopReason = "max-tokens";
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      // text held back (a partial stop string, an unfinished character) belongs to the last token
      const tail = stream.flush();
      if (tail.text && lastEvent) lastEvent.text += tail.text;
      if (!failed) done(finish());
    }
  }

  /** Routes one position; null when aborted while waiting on the cloud. */
  private async choose(
    step: SlmStep,
    confidence: number,
    tau: number,
    index: number,
    history: readonly number[],
    signal: AbortSignal | undefined,
  ): Promise<TokenEvent | null> {
    const event: TokenEvent = {
      index,
      tokenId: step.tokenId,
      text: "",
      origin: "local",
      confidence,
      tau,
      cloudLatencyMs: null,
      slmTokenId: step.tokenId,
    };
    if (step.top) event.slmTop = step.top.map((c): Candidate => ({ ...c, text: this.slm.detokenize([c.tokenId]) }));
    if (!routesToCloud(confidence, tau)) return event;
    if (!this.cloud) {
      event.origin = "fallback";
      event.fallbackReason = "no cloud configured";
      return event;
    }
    const t0 = performance.now();
    try {
      const c = await this.cloud.next(history, signal);
      event.tokenId = c.tokenId;
      event.origin = "cloud";
      event.cloudLatencyMs = c.latencyMs;
      event.cloud = { tokenId: c.tokenId, logprob: c.logprob, top: c.top };
    } catch (err) {
      if (signal?.aborted) return null;
      event.origin = "fallback";
      event.fallbackReason = err instanceof CloudCallError ? err.message : `cloud error: ${(err as Error)?.message}`;
      // a call that was skipped because the cloud is known to be down costs no network time
      event.cloudLatencyMs = err instanceof CloudCallError && err.reason === "offline" ? null : performance.now() - t0;
    }
    return event;
  }
}

function featuresOf(step: SlmStep): RouterFeatures {
  return { top1Prob: step.top1Prob, topProbs: step.top?.map((c) => c.prob), hidden: step.hidden };
}
