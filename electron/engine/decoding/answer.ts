/**
 * The state of one answer, in one object, with its steps named: `begin` (the prompt), `decide` (the
 * router at a step), `commit` (a chosen token), `finish` (the summary). The decoder and each way of
 * hiding the network work on it.
 */
import type { AnswerSummary, StopReason, TokenEvent } from "../../../shared/events.js";
import { countOrigins } from "../../../shared/events.js";
import { routesToCloud, validateTau, type Router } from "../../../shared/router.js";
import { decideStep } from "../../../shared/routing.js";
import type { SamplingSettings } from "../../../shared/sampling.js";
import type { LocalModel, SlmStep, StepNeeds } from "../../../inference/localModel.js";
import type { CloudPeer } from "../cloud/peer.js";
import { CloudLearning } from "../cloudPolicy.js";
import { TokenTextStream } from "../textStream.js";
import { localEvent, type TokenSource } from "./routed.js";

export interface AnswerOptions {
  tau: number | (() => number);
  stop?: readonly string[];
  signal?: AbortSignal;
  /** SLM candidates to attach to each event (the router may need more) */
  topK?: number;
  /** how tokens are chosen (shared/sampling.ts); absent: greedy, as before sampling */
  sampling?: SamplingSettings;
}

/** Whether the router sent this event's position to the cloud. */
export const wasRouted = (e: TokenEvent): boolean => routesToCloud(e.confidence, e.tau);

export class AnswerState {
  /** the prompt and every token committed since: what the SLM's KV cache holds */
  readonly committed: number[] = [];
  readonly events: TokenEvent[] = [];
  /** what the SLM computes at each step: the router's needs, the candidates shown, and how its token is chosen */
  readonly needs: StepNeeds;
  /** what is learnt about the cloud across answers (a fresh one without a cloud) */
  readonly learnt: CloudLearning;
  /** how the answer ended; anything but the ends set by the decoder means its consumer stopped it */
  stopReason: StopReason = "abort";
  private readonly text: TokenTextStream;
  private readonly startedAt = performance.now();
  private readonly bytesAtStart: { up: number; down: number };

  constructor(
    readonly slm: LocalModel,
    readonly router: Router,
    readonly cloud: CloudPeer | null,
    readonly source: TokenSource,
    private readonly opts: AnswerOptions,
  ) {
    const topK = Math.max(router.needs.topK, opts.topK ?? 0);
    this.needs = { top1Prob: router.needs.top1Prob, topK, hidden: router.needs.hidden, sampling: opts.sampling };
    this.learnt = cloud?.learnt ?? new CloudLearning();
    this.text = new TokenTextStream((t, last) => slm.detokenize(t, last), opts.stop ?? []);
    this.bytesAtStart = { up: cloud?.stats.bytesUp ?? 0, down: cloud?.stats.bytesDown ?? 0 };
  }

  get signal(): AbortSignal | undefined {
    return this.opts.signal;
  }

  get sampling(): SamplingSettings | undefined {
    return this.opts.sampling;
  }

  get committedLength(): number {
    return this.committed.length;
  }

  get lastEvent(): TokenEvent | undefined {
    return this.events.at(-1);
  }

  /** Reads the prompt; the cloud's copy may follow it while the SLM writes. */
  async begin(prompt: readonly number[]): Promise<SlmStep> {
    const step = await this.slm.begin(prompt, this.needs);
    this.committed.push(...prompt);
    this.source.committed(this.committed);
    return step;
  }

  /** The router at `step` (answer position `position`), with τ as it is now: the SLM's own token's event. */
  decide(step: SlmStep, position: number): TokenEvent {
    const tau = validateTau(typeof this.opts.tau === "function" ? this.opts.tau() : this.opts.tau);
    return localEvent(this.slm, step, decideStep(this.router, step, position, tau), position);
  }

  /** Commits a chosen token: "eog" when it ends the answer unsaid, "stop" when its text ends it. */
  commit(event: TokenEvent): "eog" | "stop" | "go" {
    if (this.slm.isEndOfGeneration(event.tokenId)) return "eog";
    this.committed.push(event.tokenId);
    const released = this.text.push(event.tokenId);
    event.text = released.text;
    this.events.push(event);
    this.source.committed(this.committed);
    return released.stopped ? "stop" : "go";
  }

  /** Ends the answer: text held back (a partial stop string, an unfinished character) goes to the last token. */
  finish(): AnswerSummary {
    this.source.close();
    const tail = this.text.flush();
    if (tail.text && this.lastEvent) this.lastEvent.text += tail.text;
    const counts = countOrigins(this.events);
    const elapsedMs = performance.now() - this.startedAt;
    return {
      ...counts,
      bytesUp: this.cloud ? this.cloud.stats.bytesUp - this.bytesAtStart.up : 0,
      bytesDown: this.cloud ? this.cloud.stats.bytesDown - this.bytesAtStart.down : 0,
      tokensPerSecond: elapsedMs > 0 ? (counts.tokens * 1000) / elapsedMs : 0,
      text: this.text.text,
      stopReason: this.stopReason,
      router: this.router.name,
      elapsedMs,
      ...(this.opts.sampling ? { sampling: this.opts.sampling } : {}),
    };
  }
}
