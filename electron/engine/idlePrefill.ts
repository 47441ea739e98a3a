/**
 * Idle-time pre-slide. When an answer ends and the next turn will have to slide the context window
 * (contextWindow.ts, planSlideAhead), the slide is decided at once and the SLM evaluates the next
 * prompt's kept prefix while the user types, so the next answer evaluates only its new message.
 * Between slides the same work is small: the end of the answer as the next prompt tokenises it.
 *
 * The decision is made when the answer ends, whether or not the idle work runs, so the next prompt
 * does not depend on timing; the idle work only fills the KV cache with tokens the next prompt starts
 * with (LocalModel.begin reuses them), so the answer's tokens are those of a cold cache. It starts
 * once the engine has been idle for IDLE_DELAY_MS (a user reads the answer before typing; the end of
 * an answer has its own work: saving, the UI, the router's training), in the SLM's background chain
 * (`EngineState.inspecting`), which an answer and a calibration wait for, a chunk at a time: it stops
 * at the next chunk once an answer starts, the model changes or the engine closes, and `cancel()`
 * stops it for other users of the SLM (the inspector, a model load). Its errors are logged and never
 * reach an answer.
 */
import type { Conversation } from "../../shared/bridge.js";
import type { LocalModel } from "../../inference/localModel.js";
import { errorMessage } from "../../shared/errors.js";
import type { SlideAhead } from "./contextWindow.js";
import { planNextTurn, type NextTurn } from "./conversationPrompt.js";
import type { EngineState } from "./engineState.js";

/** Tokens evaluated between two checks for a user waiting: small enough to give way within one batch. */
export const PREFILL_CHUNK = 64;
/** How long after an answer the idle work starts. */
export const IDLE_DELAY_MS = 200;
const NO_FEATURES = { top1Prob: false, topK: 0, hidden: false };

export interface PrefillResult {
  /** tokens the SLM evaluated */
  evaluated: number;
  /** the KV cache holds the whole prefix */
  complete: boolean;
}

/**
 * Makes the SLM's KV cache start with `prefix`, evaluating what it does not hold yet in chunks;
 * `stop` is asked before each chunk (then the cache holds part of the prefix, which is still reused).
 */
export async function prefill(slm: LocalModel, prefix: readonly number[], stop: () => boolean = () => false): Promise<PrefillResult> {
  const before = slm.evaluatedTokens;
  const held = slm.history;
  let n = 0;
  while (n < prefix.length && n < held.length && held[n] === prefix[n]) n++;
  while (n < prefix.length) {
    if (stop()) return { evaluated: slm.evaluatedTokens - before, complete: false };
    n = Math.min(prefix.length, n + PREFILL_CHUNK);
    // begin erases what follows the common prefix, then evaluates up to n (predicting a token nobody reads)
    await slm.begin(prefix.slice(0, n), NO_FEATURES);
  }
  return { evaluated: slm.evaluatedTokens - before, complete: true };
}

/** The engine's idle pre-slide: one per engine, in its shared state. */
export class IdlePrefill {
  /** per conversation, the slide planned after its last answer (whose id is `after`) */
  private readonly slides = new Map<string, { slide: SlideAhead; after: string }>();
  /** the idle work planned or running: stopped by `abort`, over once `done` resolves */
  private work: { abort: AbortController; done: Promise<void> } | null = null;
  /** what the idle work has evaluated so far (tokens, ms); runs that completed and that gave way */
  readonly totals = { tokens: 0, ms: 0, completed: 0, stopped: 0 };

  constructor(private readonly s: EngineState) {}

  /** The slide planned for the next turn of `conv` (its path as it was when the last answer ended), if any. */
  slideFor(conv: Conversation): SlideAhead | undefined {
    const r = this.slides.get(conv.id);
    return r && r.after === conv.messages.at(-1)?.id ? r.slide : undefined;
  }

  /**
   * Call when an answer of `conv` has ended, before another can start: plans the next turn's slide now
   * (the next plan reads it); `start()` the returned work once the answer's end is reported.
   */
  afterAnswer(conv: Conversation): { start(): void } {
    const none = { start() {} };
    this.work?.abort.abort(); // the work planned after an earlier answer is stale
    this.slides.delete(conv.id);
    const slm = this.s.slm;
    const last = conv.messages.at(-1);
    if (!slm || !last || this.s.closed) return none;
    let next: NextTurn;
    try {
      const system = typeof conv.systemPrompt === "string" ? conv.systemPrompt : this.s.defaultSystemPrompt;
      const turns = conv.messages.map((m) => ({ role: m.role, content: m.content }));
      next = planNextTurn(slm, { system, turns, keepFrom: this.s.keepFrom.get(conv.id) ?? 0, maxTokens: this.s.maxTokens });
    } catch (err) {
      console.warn(`Idle pre-slide not planned: ${errorMessage(err)}`);
      return none;
    }
    if (next.slide) this.slides.set(conv.id, { slide: next.slide, after: last.id });
    return { start: () => this.start(slm, next.prefix) };
  }

  /** Stops the idle work, if any, and waits until the SLM is free of it. */
  async cancel(): Promise<void> {
    const w = this.work;
    if (!w) return;
    w.abort.abort();
    await w.done;
  }

  /** Resolves once the idle work planned or running, if any, has ended (done or stopped). */
  async settled(): Promise<void> {
    await this.work?.done;
  }

  private start(slm: LocalModel, prefix: number[]): void {
    this.work?.abort.abort(); // an older run gives way (it stops at its next chunk)
    const abort = new AbortController();
    const s = this.s;
    const stop = () => abort.signal.aborted || s.closed || s.active != null || s.adopting != null || s.slm !== slm;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        abort.signal.removeEventListener("abort", notStarted);
        if (stop()) return resolve();
        const job = this.run(slm, prefix, stop); // stopped, it ends with the chunk it is evaluating
        s.inspecting = job;
        void job.then(resolve);
      }, IDLE_DELAY_MS);
      timer.unref();
      const notStarted = () => {
        clearTimeout(timer);
        resolve();
      };
      abort.signal.addEventListener("abort", notStarted, { once: true });
    }).finally(() => {
      if (this.work?.abort === abort) this.work = null;
    });
    this.work = { abort, done };
  }

  /** The prefill, after whatever uses the SLM in the background; never rejects. */
  private run(slm: LocalModel, prefix: number[], stop: () => boolean): Promise<void> {
    return Promise.resolve(this.s.inspecting)
      .catch(() => undefined) // whoever ran before reports its own failure
      .then(async () => {
        const t0 = performance.now();
        const r = await prefill(slm, prefix, stop);
        this.totals.tokens += r.evaluated;
        this.totals.ms += performance.now() - t0;
        if (r.complete) this.totals.completed++;
        else this.totals.stopped++;
      })
      .catch((err) => console.warn(`Idle pre-slide stopped: ${errorMessage(err)}`));
  }
}
