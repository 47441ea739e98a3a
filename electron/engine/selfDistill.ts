/**
 * The app makes the distilled confidence router (router/training/distill.ts) from the user's own answers.
 *
 * With no router file for the loaded SLM, the app routes with the confidence router, whose top-1
 * probability costs a full-vocabulary sort per token (+12–15 ms on Qwen's 152k vocabulary on a CPU).
 * Every one of those steps also yields the hidden state for free (the app's context exposes it), so
 * each answer is training data for a student that predicts that probability from the hidden state.
 * Once enough is collected, the student is trained between answers, in slices that leave the event
 * loop free, measured on held-out answers, and — when it routes closely enough like the confidence
 * router — saved to the data folder and used from the next answer on. Routing decisions stay the
 * confidence router's until then; the user sees which router is active in the model status.
 */
import * as path from "node:path";
import { clampConfidence, type FeatureNeeds, type Router, type RouterFeatures } from "../../shared/router.js";
import { ConfidenceSamples, distillRouter, DISTILL_NEEDS, type Distilled } from "../../router/training/distill.js";
import { bindingOf, describeFidelity, distilledRouterFileName, writeRouterFile } from "../../router/file.js";
import type { LocalModel } from "../../inference/localModel.js";
import { errorMessage } from "../../shared/errors.js";

export interface SelfDistillOptions {
  /** where the router file is written (the app's data folder; loadRouterFor looks there too) */
  dir: string;
  /** positions before the first training (default 4,000) */
  minSamples?: number;
  /** answers before the first training (default 5): a fifth of them is held out to measure the student */
  minAnswers?: number;
  /** more positions before each retry when a student does not route closely enough (default 4,000) */
  retryEvery?: number;
  /** memory bound: no collection beyond this many positions (default 16,000, fewer where 64 MiB of hidden states holds fewer) */
  maxSamples?: number;
  seed?: number;
  /** routed-set overlap with the confidence router at a 10% share needed to switch (default MIN_OVERLAP_AT_10) */
  minOverlap?: number;
}

/** hidden states kept for training at most (float32): 16,000 positions of Qwen2.5-0.5B's 896 fit */
const SAMPLE_MEMORY_BYTES = 64 * 2 ** 20;

export type DistillEvent =
  | { kind: "ready"; router: Router; file: string; description: string }
  | { kind: "not-yet"; description: string }
  | { kind: "failed"; error: string };

/** The confidence router, recording (hidden state, top-1 probability) at each position it scores. */
class RecordingConfidenceRouter implements Router {
  readonly name = "confidence (SLM top-1 probability; learning to predict it from the hidden state)";
  readonly needs: FeatureNeeds = DISTILL_NEEDS;
  group = 0;
  /** positions of the current answer already recorded: speculation can score a position twice */
  seen = new Set<number>();

  constructor(
    private readonly samples: ConfidenceSamples,
    private readonly max: number,
  ) {}

  score(f: RouterFeatures): number {
    const pos = f.position ?? -1;
    if (this.samples.size < this.max && !this.seen.has(pos) && this.samples.add(f, this.group)) this.seen.add(pos);
    return clampConfidence(f.top1Prob);
  }
}

export class SelfDistiller {
  private readonly samples: ConfidenceSamples;
  private readonly recorder: RecordingConfidenceRouter;
  private nextAttemptAt: number;
  private training: Promise<DistillEvent | null> | null = null;
  private readonly abort = new AbortController();
  private done = false;
  /** Set while an answer is being written: training waits (between slices) so it never delays a token. */
  private answering: { done: Promise<void>; end: () => void } | null = null;

  constructor(
    private readonly slm: Pick<LocalModel, "identity" | "hiddenSize" | "vocabSize">,
    private readonly opts: SelfDistillOptions,
  ) {
    this.samples = new ConfidenceSamples(slm.hiddenSize);
    this.recorder = new RecordingConfidenceRouter(this.samples, this.maxSamples);
    this.nextAttemptAt = opts.minSamples ?? 4_000;
  }

  private get maxSamples(): number {
    return this.opts.maxSamples ?? Math.min(16_000, Math.floor(SAMPLE_MEMORY_BYTES / (4 * this.slm.hiddenSize)));
  }

  /** The router to use until the distilled one is ready: the confidence router's decisions. */
  get router(): Router {
    return this.recorder;
  }

  get collected(): number {
    return this.samples.size;
  }

  /** Call when an answer starts: its positions form one group (held-out data is whole answers). */
  beginAnswer(): void {
    this.answering?.end();
    let end = () => {};
    const done = new Promise<void>((r) => (end = r));
    this.answering = { done, end };
    this.recorder.group++;
    this.recorder.seen = new Set();
  }

  /**
   * Call when an answer has ended. Trains when enough has been collected (at most one training at a
   * time); resolves with what happened, or null when nothing was due.
   */
  afterAnswer(): Promise<DistillEvent | null> {
    this.answering?.end();
    this.answering = null;
    if (this.done || this.training || this.samples.size < this.nextAttemptAt || this.recorder.group < (this.opts.minAnswers ?? 5))
      return Promise.resolve(null);
    this.training = this.train().finally(() => (this.training = null));
    return this.training;
  }

  private async train(): Promise<DistillEvent | null> {
    let d: Distilled;
    try {
      d = await distillRouter(this.slm, this.samples, {
        seed: this.opts.seed ?? 1,
        signal: this.abort.signal,
        idle: () => this.idle(),
        source: "self-distilled from this device's answers",
        minOverlap: this.opts.minOverlap,
      });
    } catch (err) {
      if (this.abort.signal.aborted) return null;
      this.done = true;
      return { kind: "failed", error: errorMessage(err) };
    }
    const how = describeFidelity(d.fidelity);
    if (!d.usable) {
      const max = this.maxSamples;
      if (this.samples.size >= max) this.done = true;
      else this.nextAttemptAt = Math.min(max, this.samples.size + (this.opts.retryEvery ?? 4_000));
      return {
        kind: "not-yet",
        description: `${how}${this.done ? "; keeping the confidence router" : `; trying again at ${this.nextAttemptAt} positions`}`,
      };
    }
    const file = path.join(this.opts.dir, distilledRouterFileName(bindingOf(this.slm)));
    try {
      writeRouterFile(file, d.json);
    } catch (err) {
      // the router still works for this session; it is only not remembered
      this.done = true;
      return { kind: "ready", router: d.router, file: "", description: `${how} (not saved: ${errorMessage(err)})` };
    }
    this.done = true;
    return { kind: "ready", router: d.router, file, description: how };
  }

  /** Resolves when no answer is being written (or training is being stopped). */
  private idle(): Promise<void> {
    if (!this.answering) return Promise.resolve();
    return Promise.race([
      this.answering.done,
      new Promise<void>((r) => this.abort.signal.addEventListener("abort", () => r(), { once: true })),
    ]);
  }

  /** Stops a training in progress (the SLM is being replaced or the app closes). */
  async dispose(): Promise<void> {
    this.abort.abort();
    await this.training?.catch(() => undefined);
  }
}
