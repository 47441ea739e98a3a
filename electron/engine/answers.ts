/**
 * Answers: send, regenerate, edit and resend, continue, stop; planning the prompt, running the decoder
 * over the SLM, the router and the cloud, committing each token to the journal and pushing it; live stats.
 * A concern of the engine service (service.ts), over its shared state (engineState.ts).
 */
import { randomUUID } from "node:crypto";
import type { AnswerHandle, Conversation, LiveStats, OpArg, OpResult, StoredMessage } from "../../shared/bridge.js";
import type { ChatMessage } from "../../shared/chat.js";
import type { AnswerSummary, TokenEvent } from "../../shared/events.js";
import { CollaborativeDecoder, type Answer } from "./decoder.js";
import { fork } from "./conversationVersions.js";
import { LocalModel } from "../../inference/localModel.js";
import { planPrompt, truncationNotice, type PlannedPrompt } from "./conversationPrompt.js";
import { errorMessage } from "../../shared/errors.js";
import { resolveSampling, type SamplingConfig } from "../../shared/sampling.js";
import type { EngineState, ActiveAnswer } from "./engineState.js";
import { inspectorCandidates } from "./inspectorCost.js";
import type { CloudControls } from "./cloudControls.js";
import type { Models } from "./models.js";

export class Answers {
  constructor(
    private readonly s: EngineState,
    private readonly controls: CloudControls,
    private readonly models: Models,
  ) {}

  liveStats(): LiveStats {
    let active: LiveStats["active"] = null;
    if (this.s.active) {
      const conv = this.s.store.has(this.s.active.handle.conversationId) ? this.s.store.get(this.s.active.handle.conversationId) : null;
      const msg = conv?.messages.find((m) => m.id === this.s.active!.handle.messageId);
      const tokens = msg?.tokens ?? [];
      const secs = (performance.now() - this.s.active.startedAt) / 1000;
      active = {
        requestId: this.s.active.handle.requestId,
        tokens: tokens.length,
        cloudTokens: tokens.filter((t) => t.origin === "cloud").length,
        fallbackTokens: tokens.filter((t) => t.origin === "fallback").length,
        tokensPerSecond: secs > 0 ? tokens.length / secs : 0,
      };
    }
    return { active, totals: { ...this.s.totals } };
  }

  async send({ requestId, conversationId, text }: OpArg<"send">): Promise<AnswerHandle> {
    // validate everything first, change after: a refused request leaves the conversation as it was
    const conv = this.s.store.get(String(conversationId));
    const content = String(text ?? "");
    if (!content.trim()) throw new Error("Empty message");
    checkRequestId(requestId);
    this.assertCanAnswer();
    const user: StoredMessage = { id: randomUUID(), role: "user", content, createdAt: Date.now() };
    // planned before anything changes: a prompt that cannot fit is refused with the conversation intact
    const planned = this.planFor(conv, [...conv.messages, user]);
    const path = [...conv.messages, user, newAnswer(planned, this.s.samplingOf(conv))];
    const title = conv.messages.length === 0 && conv.title === "New chat" ? titleFrom(content) : conv.title;
    return this.startAnswer(String(requestId), conv, { path, at: conv.messages.length, title }, planned);
  }

  /** A new answer to the last user message; the answers it had stay as earlier versions (‹ 1/2 ›). */
  async regenerate({ requestId, conversationId }: OpArg<"regenerate">): Promise<AnswerHandle> {
    const conv = this.s.store.get(String(conversationId));
    checkRequestId(requestId);
    this.assertCanAnswer();
    let end = conv.messages.length;
    while (end > 0 && conv.messages[end - 1].role === "assistant") end--;
    if (!conv.messages[end - 1]) throw new Error("Nothing to regenerate");
    const planned = this.planFor(conv, conv.messages.slice(0, end));
    const path = fork(conv.messages, end, [newAnswer(planned, this.s.samplingOf(conv))]);
    return this.startAnswer(String(requestId), conv, { path, at: end - 1 }, planned);
  }

  /** The edited message and a new answer become a new branch from that message; the old branch stays a version of it. */
  async editAndResend({ requestId, conversationId, messageId, text }: OpArg<"editAndResend">): Promise<AnswerHandle> {
    const conv = this.s.store.get(String(conversationId));
    checkRequestId(requestId);
    this.assertCanAnswer();
    const i = conv.messages.findIndex((m) => m.id === messageId && m.role === "user");
    if (i < 0) throw new Error("No such message to edit");
    const content = String(text ?? "");
    if (!content.trim()) throw new Error("Empty message");
    const edited: StoredMessage = { id: randomUUID(), role: "user", content, createdAt: Date.now() };
    const planned = this.planFor(conv, [...conv.messages.slice(0, i), edited]);
    const path = fork(conv.messages, i, [edited, newAnswer(planned, this.s.samplingOf(conv))]);
    return this.startAnswer(String(requestId), conv, { path, at: i }, planned);
  }

  /**
   * Writes on where the last answer stopped at the token limit: the same message gets more tokens. The
   * models read the prompt it was answering plus the tokens it has, so the text goes on seamlessly.
   */
  async continueAnswer({ requestId, conversationId }: OpArg<"continueAnswer">): Promise<AnswerHandle> {
    const conv = this.s.store.get(String(conversationId));
    checkRequestId(requestId);
    this.assertCanAnswer();
    const at = conv.messages.length - 1;
    const last = conv.messages[at];
    if (last?.role !== "assistant" || last.summary?.stopReason !== "max-tokens" || at < 1) {
      throw new Error("Only an answer that stopped at the token limit can be continued");
    }
    const done = last.tokens ?? [];
    const planned = this.planFor(conv, conv.messages.slice(0, at), this.s.maxTokens + done.length);
    const prompt = [...planned.tokens, ...done.map((t) => t.tokenId)];
    if (prompt.length + Math.min(this.s.maxTokens, 16) > planned.plan.usage.window) {
      throw new Error(`This answer fills the ${planned.plan.usage.window}-token context window; it cannot be continued`);
    }
    const context = { ...planned.plan.usage, used: prompt.length };
    // a copy goes on (the stored one is kept if the start cannot be saved); no status while it streams
    const { status: _s, ...rest } = last;
    const continued: StoredMessage = { ...rest, tokens: [...done], context };
    const next = { path: [...conv.messages.slice(0, at), continued], at: at - 1 };
    return this.startAnswer(String(requestId), conv, next, { tokens: prompt, plan: { ...planned.plan, usage: context } });
  }

  async stop({ requestId }: OpArg<"stop">): Promise<OpResult<"stop">> {
    if (!this.s.active || this.s.active.handle.requestId !== requestId) return { stopped: false };
    await this.s.stopActive();
    return { stopped: true };
  }

  private assertCanAnswer(): void {
    if (this.s.closed) throw new Error("The engine is shutting down");
    if (!this.s.slm) throw new Error(this.s.models.slm.error ?? "The local model is not loaded yet");
    if (this.s.active) throw new Error("An answer is already being generated; stop it first");
  }

  /**
   * The prompt for answering `messages` (the conversation as it will be) under the context policy:
   * the system prompt, then the newest turns that fit (contextWindow.ts). Changes nothing.
   */
  private planFor(conv: Conversation, messages: readonly StoredMessage[], maxTokens = this.s.maxTokens): PlannedPrompt {
    const system = typeof conv.systemPrompt === "string" ? conv.systemPrompt : this.s.defaultSystemPrompt;
    const turns: ChatMessage[] = messages.map((m) => ({ role: m.role, content: m.content }));
    const preSlid = this.s.idle.slideFor(conv);
    return planPrompt(this.s.slm!, { system, turns, keepFrom: this.s.keepFrom.get(conv.id) ?? 0, maxTokens, preSlid });
  }

  /**
   * Makes `next.path` (ending with the new, empty answer) the conversation's active path, saves it and
   * starts the answer; `at` is where the message answered sits. Nothing changes if the save fails.
   */
  private async startAnswer(
    requestId: string,
    conv: Conversation,
    next: { path: StoredMessage[]; at: number; title?: string },
    planned: PlannedPrompt,
  ): Promise<AnswerHandle> {
    const slm = this.s.slm!;
    const { usage } = planned.plan;
    const assistant = next.path[next.path.length - 1];
    const user = next.path[next.at];
    const before = { messages: conv.messages, title: conv.title, updatedAt: conv.updatedAt };
    Object.assign(conv, { messages: next.path, title: next.title ?? conv.title, updatedAt: Date.now() });
    const handle: AnswerHandle = { requestId, conversationId: conv.id, messageId: assistant.id, userMessageId: user.id };
    const active: ActiveAnswer = {
      handle,
      abort: new AbortController(),
      pending: [],
      timer: null,
      startedAt: performance.now(),
      done: Promise.resolve(),
    };
    this.s.active = active;
    try {
      await this.s.store.save(conv.id);
    } catch (err) {
      // nothing started: the engine takes the next message, and the conversation is what the disk holds
      this.s.active = null;
      Object.assign(conv, before);
      throw new Error(`Could not save the conversation, so the answer was not started (${errorMessage(err)})`, { cause: err });
    }
    this.s.keepFrom.set(conv.id, planned.plan.keepFrom);
    if (usage.truncated) this.s.notice(truncationNotice(usage.window));
    this.s.emit({ type: "answer-start", handle, tau: this.s.tau, user, at: next.at, answer: { ...assistant }, context: usage });
    this.s.emitConversations();
    // the SLM has one sequence: an inspector re-evaluation still running finishes first
    active.done = this.s.inspecting.then(() => this.runAnswer(slm, active, conv, assistant, planned.tokens));
    return handle;
  }

  /** Runs the answer `msg` over `prompt` to its end: decode and stream, then save and tell. */
  private async runAnswer(slm: LocalModel, a: ActiveAnswer, conv: Conversation, msg: StoredMessage, prompt: number[]): Promise<void> {
    const { conversationId } = a.handle;
    // what the message holds already: nothing for a new answer, the first part for a continued one
    const base = { tokens: msg.tokens!.length, content: msg.content, summary: msg.summary };
    this.s.distiller?.beginAnswer();
    let cloudControl: { end(): Promise<void> } | null = null;
    try {
      const control = this.s.control.begin(conversationId, this.s.cloud, this.s.cloudSettings.url || null, this.controls.pairKey());
      cloudControl = control;
      const decoder = new CollaborativeDecoder(slm, this.s.router, control.peer);
      const answer = control.wrap(
        decoder.generate(prompt, {
          tau: control.tau(() => this.s.tau),
          maxTokens: this.s.maxTokens,
          signal: a.abort.signal,
          topK: this.s.opts.topK ?? inspectorCandidates(slm.vocabSize),
          sampling: msg.sampling,
        }),
      );
      await this.streamTokens(a, msg, answer, base.tokens);
      const summary = await answer.summary;
      this.flush(a);
      // the decoder's text includes text held back until the end (a partial character, a stop prefix)
      msg.content = base.content + summary.text;
      msg.summary = base.summary ? joinSummaries(base.summary, summary) : summary;
      msg.status = summary.stopReason === "abort" ? "stopped" : "complete";
      this.addTotals(msg.tokens!.slice(base.tokens), summary);
    } catch (err) {
      this.flush(a);
      msg.status = "error";
      msg.error = errorMessage(err);
    }
    conv.updatedAt = Date.now();
    await this.controls.endCloudControl(cloudControl, conversationId);
    await this.endAnswer(a, msg, conv);
  }

  /**
   * Adds each decoded token to `msg` (its index after the `offset` tokens the message had), to the
   * conversation's journal and to the next delta, until the answer ends or is stopped.
   */
  private async streamTokens(a: ActiveAnswer, msg: StoredMessage, answer: Answer, offset: number): Promise<void> {
    let journalFailed = false;
    for await (const decoded of answer) {
      const ev = offset ? { ...decoded, index: decoded.index + offset } : decoded;
      msg.tokens!.push(ev);
      msg.content += ev.text;
      // committed to the conversation's journal before anyone sees it: a token shown in the UI
      // survives a crash of this process (conversationStore.ts); a failing disk must not stop the
      // answer, which is saved again when it ends
      try {
        await this.s.store.appendToken(a.handle.conversationId, a.handle.messageId, ev);
      } catch (err) {
        if (!journalFailed) this.s.notice(`Could not save the answer as it streams (${errorMessage(err)}); it will be saved when it ends.`);
        journalFailed = true;
      }
      a.pending.push(ev);
      a.timer ??= setTimeout(() => this.flush(a), this.s.opts.flushMs ?? 16);
      if (this.s.opts.paceMs) await sleep(this.s.opts.paceMs, a.abort.signal);
      if (a.abort.signal.aborted) break;
    }
  }

  /** Sends the tokens decoded since the last delta, with the live stats. */
  private flush(a: ActiveAnswer): void {
    if (a.timer) clearTimeout(a.timer);
    a.timer = null;
    if (!a.pending.length) return;
    const tokens = a.pending;
    a.pending = [];
    const { requestId, conversationId, messageId } = a.handle;
    this.s.emit({ type: "answer-delta", requestId, conversationId, messageId, tokens });
    this.s.emit({ type: "stats", stats: this.liveStats() });
  }

  /** The answer has ended (`msg` complete, stopped or failed): the engine is free, the conversation saved, and everyone told. */
  private async endAnswer(a: ActiveAnswer, msg: StoredMessage, conv: Conversation): Promise<void> {
    const { requestId, conversationId, messageId } = a.handle;
    this.s.active = null;
    // idle pre-slide (idlePrefill.ts): the next turn's slide is planned before another answer can start
    const idle = this.s.idle.afterAnswer(conv);
    try {
      await this.s.store.save(conversationId);
    } catch (err) {
      this.s.notice(`Could not save the conversation: ${errorMessage(err)}`);
    }
    if (msg.status === "error") this.s.emit({ type: "answer-error", requestId, conversationId, messageId, error: msg.error! });
    else this.s.emit({ type: "answer-end", requestId, conversationId, message: msg });
    this.s.emit({ type: "stats", stats: this.liveStats() });
    this.s.emitConversations();
    idle.start(); // and evaluated while the user types
    if (this.s.distiller) void this.models.learnRouter(this.s.distiller);
  }

  private addTotals(tokens: TokenEvent[], s: { cloudCalls: number; bytesUp: number; bytesDown: number }): void {
    this.s.totals.answers++;
    this.s.totals.tokens += tokens.length;
    this.s.totals.cloudTokens += tokens.filter((t) => t.origin === "cloud").length;
    this.s.totals.fallbackTokens += tokens.filter((t) => t.origin === "fallback").length;
    this.s.totals.cloudCalls += s.cloudCalls;
    this.s.totals.bytesUp += s.bytesUp;
    this.s.totals.bytesDown += s.bytesDown;
  }
}

function checkRequestId(requestId: unknown): void {
  if (typeof requestId !== "string" || !requestId || requestId.length > 100) throw new Error("Invalid request id");
}

function titleFrom(text: string): string {
  const line = text.trim().split("\n")[0];
  return line.length > 48 ? `${line.slice(0, 47)}…` : line;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The summary of an answer written in two parts (Continue): counts added, the text joined, the last stop reason. */
function joinSummaries(a: AnswerSummary, b: AnswerSummary): AnswerSummary {
  const elapsedMs = a.elapsedMs + b.elapsedMs;
  const tokens = a.tokens + b.tokens;
  return {
    ...b,
    tokens,
    cloudTokens: a.cloudTokens + b.cloudTokens,
    fallbackTokens: a.fallbackTokens + b.fallbackTokens,
    cloudCalls: a.cloudCalls + b.cloudCalls,
    bytesUp: a.bytesUp + b.bytesUp,
    bytesDown: a.bytesDown + b.bytesDown,
    tokensPerSecond: elapsedMs > 0 ? (1000 * tokens) / elapsedMs : b.tokensPerSecond,
    text: a.text + b.text,
    elapsedMs,
  };
}

/**
 * The empty answer an answer starts as, with the context it reads and the sampling it is drawn with: a
 * new seed per answer unless the conversation fixes one (Regenerate differs; the stored seed reproduces it).
 */
function newAnswer(planned: PlannedPrompt, sampling: SamplingConfig): StoredMessage {
  return {
    id: randomUUID(),
    role: "assistant",
    content: "",
    createdAt: Date.now(),
    tokens: [],
    context: planned.plan.usage,
    sampling: resolveSampling(sampling),
  };
}
