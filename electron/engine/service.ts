/**
 * The engine service: implements the bridge's function table (shared/bridge.ts) over the engine.
 * Hosted by Electron's main process (electron/main.ts) or by browser mode's Node process (web/server.ts);
 * imports no `electron`, so tests drive it directly.
 *
 * It holds the SLM, the router, the cloud client, τ and the conversations. One answer runs at a time
 * (the SLM has one KV-cached sequence); each of its tokens is committed to the conversation's journal
 * (conversationStore.ts) before it is pushed, in batched deltas, so a token the UI shows survives a crash.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { defaultSlm, modelsForRole } from "../../models/catalogue.js";
import type {
  AnswerHandle,
  BridgeApi,
  BridgeOp,
  CatalogueItem,
  BridgeListener,
  BridgeSnapshot,
  CloudStatus,
  Conversation,
  LiveStats,
  ModelStatus,
  OpArg,
  OpResult,
  SettingsPatch,
  SettingsView,
  StageStatus,
  StoredMessage,
} from "../../shared/bridge.js";
import { BRIDGE_OPS, MAX_IMPORT_CHARS } from "../../shared/bridge.js";
import type { ChatMessage } from "../../shared/chat.js";
import type { AnswerSummary, TokenEvent } from "../../shared/events.js";
import { validateTau } from "../../shared/router.js";
import { resolveModelSource, VocabularyMismatchError } from "../../inference/modelFile.js";
import { CloudCallError } from "./cloud/peer.js";
import { TandemCloudClient } from "./cloud/tandemClient.js";
import { ConversationStore, metaOf } from "./conversationStore.js";
import { candidatesAt } from "./candidatesAt.js";
import { CollaborativeDecoder } from "./decoder.js";
import { exportConversation } from "./exportConversation.js";
import { fork, selectVersion } from "./conversationVersions.js";
import { exportAll, readImport } from "./conversationArchive.js";
import { searchConversations } from "./conversationSearch.js";
import { LocalModel } from "../../inference/localModel.js";
import { loadRouterFor } from "../../router/learnedRouter.js";
import { SelfDistiller } from "./selfDistill.js";
import { MAX_CONTEXT_SIZE, MAX_SYSTEM_PROMPT_CHARS, MIN_CONTEXT_SIZE, SettingsStore } from "./settings.js";
import { planPrompt, truncationNotice, type PlannedPrompt } from "./conversationPrompt.js";
import { lockDataFolder } from "./dataLock.js";
import { authFailure, checkCloudSettings, sameServer } from "./cloudSettings.js";
import { preflightModelFile } from "../../inference/modelPreflight.js";
import { errorMessage } from "../../shared/errors.js";
import { resolveSampling, samplingConfigSchema, type SamplingConfig } from "../../shared/sampling.js";
import { CloudControl } from "./cloudControl/engineControl.js";
import { EngineState, emptyStage, type ActiveAnswer } from "./engineState.js";
import { cheapOnVocabulary, inspectorCandidates } from "./inspectorCost.js";
import type { ServiceOptions } from "./serviceOptions.js";

export { emptyStage } from "./engineState.js";
export { CHEAP_VOCAB_MAX, cheapOnVocabulary, inspectorCandidates } from "./inspectorCost.js";
export type { ServiceOptions } from "./serviceOptions.js";
import { pairKey } from "./cloudControl/calibrationStore.js";

export class TandemService implements BridgeApi {
  private constructor(readonly s: EngineState) {}

  /** the SLM (tests read it) */
  private get slm(): LocalModel | null {
    return this.s.slm;
  }

  /** Opens the store, then loads the SLM and connects the cloud. Loading errors land in the model status. */
  static async start(opts: ServiceOptions): Promise<TandemService> {
    const service = await TandemService.open(opts);
    await service.loadInitialModels();
    return service;
  }

  /** Opens the store only: the service answers at once (the app's window first), models load after. */
  static async open(opts: ServiceOptions): Promise<TandemService> {
    // a second engine on this folder is refused before it touches anything (dataLock.ts)
    const lock = opts.dataLock ?? (await lockDataFolder(opts.dataDir));
    try {
      const store = await ConversationStore.open(opts.dataDir);
      const settings = await SettingsStore.open(opts.dataDir, opts.secrets);
      const token = await settings.secrets.read().catch(() => null); // unreadable: as if none was saved
      const state = new EngineState(opts, store, settings, token);
      state.lock = lock;
      state.control = await CloudControl.open(opts.dataDir);
      state.notices.push(...state.control.notices);
      return new TandemService(state);
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Loads the SLM given (or remembered) and connects the cloud; progress and errors land in the model status. */
  async loadInitialModels(): Promise<void> {
    const slm = this.s.opts.slm ?? this.s.settings.get().slm ?? null;
    if (slm && !this.s.closed) await this.loadSlm(slm);
    if (this.s.slm && !this.s.closed && this.s.cloudSettings.kind !== "none") await this.connectCloud();
  }

  subscribe(listener: BridgeListener): () => void {
    this.s.listeners.add(listener);
    return () => this.s.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.s.closed = true;
    await this.s.adopting;
    if (this.s.active) {
      this.s.active.abort.abort();
      await this.s.active.done;
    }
    await this.s.distiller?.dispose();
    await this.s.saving;
    await this.s.store.flush();
    await this.s.cloud?.close();
    await this.s.slm?.dispose();
    this.s.listeners.clear();
    await this.s.lock?.release();
  }

  /** The LLM status of an in-process server changed (browser mode host). */
  setLlmStatus(stage: StageStatus): void {
    this.s.models = { ...this.s.models, llm: stage };
    this.s.emit({ type: "models", models: this.s.models });
  }

  // ------------------------------------------------------------------------------------------------
  // Snapshot, τ, stats

  async snapshot(_arg: OpArg<"snapshot"> = {}): Promise<BridgeSnapshot> {
    return {
      tau: this.s.tau,
      conversations: this.s.store.list(),
      models: this.s.models,
      cloud: this.s.cloudStatusValue,
      stats: this.liveStats(),
      notices: [...this.s.notices],
      activeRequest: this.s.active
        ? {
            requestId: this.s.active.handle.requestId,
            conversationId: this.s.active.handle.conversationId,
            messageId: this.s.active.handle.messageId,
          }
        : null,
    };
  }

  async setTau({ tau }: OpArg<"setTau">): Promise<OpResult<"setTau">> {
    // the decoder reads τ through a function before every token: this takes effect on the next one
    this.s.tau = validateTau(Number(tau));
    this.s.emit({ type: "tau", tau: this.s.tau });
    this.s.persist({ tau: this.s.tau });
    await this.explicitTau();
    return { tau: this.s.tau };
  }

  async stats(_arg: OpArg<"stats"> = {}): Promise<LiveStats> {
    return this.liveStats();
  }

  private liveStats(): LiveStats {
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

  // ------------------------------------------------------------------------------------------------
  // Conversations

  async listConversations(_arg: OpArg<"listConversations"> = {}): Promise<OpResult<"listConversations">> {
    return this.s.store.list();
  }

  async getConversation({ id }: OpArg<"getConversation">): Promise<Conversation> {
    return this.s.store.get(String(id));
  }

  async createConversation({ title }: OpArg<"createConversation">): Promise<Conversation> {
    const c = await this.s.store.create(typeof title === "string" && title.trim() ? title.trim().slice(0, 200) : undefined);
    await this.s.control.created(c.id);
    this.s.emitConversations();
    return c;
  }

  async renameConversation({ id, title }: OpArg<"renameConversation">): Promise<OpResult<"renameConversation">> {
    const meta = await this.s.store.rename(String(id), String(title));
    this.s.emitConversations();
    return meta;
  }

  async deleteConversation({ id }: OpArg<"deleteConversation">): Promise<OpResult<"deleteConversation">> {
    if (this.s.active?.handle.conversationId === id) await this.stopActive();
    const deleted = await this.s.store.delete(String(id));
    this.s.keepFrom.delete(String(id));
    // the cloud forgets it too (best effort: an offline cloud evicts the idle session anyway)
    if (deleted) await this.s.control.drop(String(id), this.s.cloud);
    this.s.emitConversations();
    return { deleted };
  }

  async exportConversation({ id, format }: OpArg<"exportConversation">): Promise<OpResult<"exportConversation">> {
    if (format !== "markdown" && format !== "json") throw new Error(`Unknown export format ${JSON.stringify(format)}`);
    return exportConversation(this.s.store.get(String(id)), format);
  }

  async exportAll(_arg: OpArg<"exportAll"> = {}): Promise<OpResult<"exportAll">> {
    return exportAll(this.s.store.all());
  }

  /** Checks the whole file first (conversationArchive.ts); then adds every conversation, or none. */
  async importConversations({ content, dryRun }: OpArg<"importConversations">): Promise<OpResult<"importConversations">> {
    if (typeof content !== "string" || content.length > MAX_IMPORT_CHARS) throw new Error("An import is the text of an export file");
    const plan = readImport(content, (id) => this.s.store.has(id));
    if (dryRun === true) return { imported: plan.conversations.map(metaOf), renamed: plan.renamed };
    await this.s.store.addAll(plan.conversations);
    this.s.emitConversations();
    return { imported: plan.conversations.map(metaOf), renamed: plan.renamed };
  }

  async searchConversations({ query }: OpArg<"searchConversations">): Promise<OpResult<"searchConversations">> {
    return searchConversations(this.s.store.all(), String(query ?? "").slice(0, 500));
  }

  // ------------------------------------------------------------------------------------------------
  // Answers

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
    const path = [...conv.messages, user, newAnswer(planned, this.samplingOf(conv))];
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
    const path = fork(conv.messages, end, [newAnswer(planned, this.samplingOf(conv))]);
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
    const path = fork(conv.messages, i, [edited, newAnswer(planned, this.samplingOf(conv))]);
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

  /** Makes another version active where a message has several (‹ 2/3 ›): what the next answer reads. */
  async selectVersion({ conversationId, messageId, version }: OpArg<"selectVersion">): Promise<Conversation> {
    const conv = this.s.store.get(String(conversationId));
    if (this.s.active?.handle.conversationId === conv.id) throw new Error("Stop the current answer before switching versions");
    const at = conv.messages.findIndex((m) => m.id === messageId);
    if (at < 0) throw new Error("No such message in this conversation");
    const path = selectVersion(conv.messages, at, Number(version));
    const before = { messages: conv.messages, updatedAt: conv.updatedAt };
    Object.assign(conv, { messages: path, updatedAt: Date.now() });
    try {
      await this.s.store.save(conv.id);
    } catch (err) {
      Object.assign(conv, before); // the disk still has the other version active: so does the app
      throw err;
    }
    this.s.keepFrom.delete(conv.id); // another path: its window is planned afresh
    this.s.emitConversations();
    return conv;
  }

  async stop({ requestId }: OpArg<"stop">): Promise<OpResult<"stop">> {
    if (!this.s.active || this.s.active.handle.requestId !== requestId) return { stopped: false };
    await this.stopActive();
    return { stopped: true };
  }

  private async stopActive(): Promise<void> {
    const a = this.s.active;
    if (!a) return;
    a.abort.abort();
    await a.done;
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
    return planPrompt(this.s.slm!, { system, turns, keepFrom: this.s.keepFrom.get(conv.id) ?? 0, maxTokens });
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

  private async runAnswer(slm: LocalModel, a: ActiveAnswer, conv: Conversation, msg: StoredMessage, prompt: number[]): Promise<void> {
    const { requestId, conversationId, messageId } = a.handle;
    // what the message holds already: nothing for a new answer, the first part for a continued one
    const base = { tokens: msg.tokens!.length, content: msg.content, summary: msg.summary };
    const flush = () => {
      if (a.timer) clearTimeout(a.timer);
      a.timer = null;
      if (!a.pending.length) return;
      const tokens = a.pending;
      a.pending = [];
      this.s.emit({ type: "answer-delta", requestId, conversationId, messageId, tokens });
      this.s.emit({ type: "stats", stats: this.liveStats() });
    };
    this.s.distiller?.beginAnswer();
    let cloudControl: { end(): Promise<void> } | null = null;
    try {
      const control = this.s.control.begin(conversationId, this.s.cloud, this.s.cloudSettings.url || null, this.pairKey());
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
      let journalFailed = false;
      for await (const decoded of answer) {
        const ev = base.tokens ? { ...decoded, index: decoded.index + base.tokens } : decoded;
        msg.tokens!.push(ev);
        msg.content += ev.text;
        // committed to the conversation's journal before anyone sees it: a token shown in the UI
        // survives a crash of this process (conversationStore.ts); a failing disk must not stop the
        // answer, which is saved again when it ends
        try {
          await this.s.store.appendToken(conversationId, messageId, ev);
        } catch (err) {
          if (!journalFailed)
            this.s.notice(`Could not save the answer as it streams (${errorMessage(err)}); it will be saved when it ends.`);
          journalFailed = true;
        }
        a.pending.push(ev);
        a.timer ??= setTimeout(flush, this.s.opts.flushMs ?? 16);
        if (this.s.opts.paceMs) await sleep(this.s.opts.paceMs, a.abort.signal);
        if (a.abort.signal.aborted) break;
      }
      const summary = await answer.summary;
      flush();
      // the decoder's text includes text held back until the end (a partial character, a stop prefix)
      msg.content = base.content + summary.text;
      msg.summary = base.summary ? joinSummaries(base.summary, summary) : summary;
      msg.status = summary.stopReason === "abort" ? "stopped" : "complete";
      this.addTotals(msg.tokens!.slice(base.tokens), summary);
    } catch (err) {
      flush();
      msg.status = "error";
      msg.error = errorMessage(err);
    }
    conv.updatedAt = Date.now();
    await this.endCloudControl(cloudControl, conversationId);
    this.s.active = null;
    try {
      await this.s.store.save(conversationId);
    } catch (err) {
      this.s.notice(`Could not save the conversation: ${errorMessage(err)}`);
    }
    if (msg.status === "error") this.s.emit({ type: "answer-error", requestId, conversationId, messageId, error: msg.error! });
    else this.s.emit({ type: "answer-end", requestId, conversationId, message: msg });
    this.s.emit({ type: "stats", stats: this.liveStats() });
    this.s.emitConversations();
    if (this.s.distiller) void this.learnRouter(this.s.distiller);
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

  // ------------------------------------------------------------------------------------------------
  // Cloud controls (cloudControl/): target share, budgets, local-only, what the cloud has seen, Forget

  /** The model pair a calibration belongs to: the SLM, the router scoring it, the cloud's model. */
  private pairKey(): string {
    return pairKey({ slm: this.s.slm?.identity.name ?? "none", router: this.s.router.name, cloud: this.s.cloud?.model?.name ?? null });
  }

  private controlView() {
    return this.s.control.view(this.s.slm ? this.pairKey() : null, this.s.tau);
  }

  async cloudControl(_arg: OpArg<"cloudControl"> = {}): Promise<OpResult<"cloudControl">> {
    return this.controlView();
  }

  async updateCloudControl(patch: OpArg<"updateCloudControl">): Promise<OpResult<"updateCloudControl">> {
    await this.s.control.update(patch);
    const view = this.controlView();
    this.s.emit({ type: "cloud-control", control: view });
    return view;
  }

  /** An explicit τ turns a target share off: the last one set rules. */
  private async explicitTau(): Promise<void> {
    if (this.s.control.store.settings.targetShare === null) return;
    await this.updateCloudControl({ targetShare: null }).catch((err) =>
      this.s.notice(`Could not save the cloud controls: ${errorMessage(err)}`),
    );
  }

  async cloudSeen({ conversationId }: OpArg<"cloudSeen">): Promise<OpResult<"cloudSeen">> {
    this.s.store.get(String(conversationId)); // an unknown conversation is an error, not an empty record
    return this.s.control.seen(String(conversationId));
  }

  async setLocalOnly({ conversationId, localOnly }: OpArg<"setLocalOnly">): Promise<OpResult<"setLocalOnly">> {
    this.s.store.get(String(conversationId));
    const seen = await this.s.control.setLocalOnly(String(conversationId), localOnly === true);
    this.s.emit({ type: "cloud-seen", seen });
    return seen;
  }

  async forgetCloud({ conversationId }: OpArg<"forgetCloud">): Promise<OpResult<"forgetCloud">> {
    this.s.store.get(String(conversationId));
    if (this.s.active?.handle.conversationId === conversationId)
      throw new Error("Stop the current answer before asking the cloud to forget");
    const seen = await this.s.control.forget(String(conversationId), this.s.cloud);
    this.s.emit({ type: "cloud-seen", seen });
    return seen;
  }

  /** After an answer: what the cloud saw of it is recorded, the calibration kept; the UI is told. */
  private async endCloudControl(control: { end(): Promise<void> } | null, conversationId: string): Promise<void> {
    if (!control) return;
    try {
      await control.end();
    } catch (err) {
      this.s.notice(`Could not save what the cloud has seen: ${errorMessage(err)}`);
    }
    this.s.emit({ type: "cloud-seen", seen: this.s.control.seen(conversationId) });
    this.s.emit({ type: "cloud-control", control: this.controlView() });
  }

  // ------------------------------------------------------------------------------------------------
  // Models

  async modelStatus(_arg: OpArg<"modelStatus"> = {}): Promise<ModelStatus> {
    return this.s.models;
  }

  async openLocalModel({ path: file }: OpArg<"openLocalModel">): Promise<ModelStatus> {
    if (this.s.active) throw new Error("Stop the current answer before changing the model");
    await this.useSlm(String(file));
    return this.s.models;
  }

  /** The file dialog is the desktop app's (its main process answers this); the engine has none. */
  async chooseLocalModel(_arg: OpArg<"chooseLocalModel"> = {}): Promise<ModelStatus | null> {
    throw new Error("Choosing a file needs the desktop app: type the model file's full path instead");
  }

  async catalogue(_arg: OpArg<"catalogue"> = {}): Promise<CatalogueItem[]> {
    return this.s.opts.catalogue ?? defaultCatalogue();
  }

  async downloadModel({ id }: OpArg<"downloadModel">): Promise<ModelStatus> {
    const item = (await this.catalogue()).find((c) => c.id === id);
    if (!item) throw new Error(`No model ${JSON.stringify(id)} in the catalogue`);
    if (this.s.downloads.status?.status === "downloading") throw new Error("A download is already running; cancel it first");
    // runs in the background: progress arrives as `models` events; the model is used once complete
    void this.s.downloads
      .download({ id: item.id, uri: item.uri, dir: this.modelsDir })
      .then((file) => {
        if (this.s.closed) return;
        this.s.adopting = (async () => {
          if (this.s.active) await this.stopActive();
          await this.useSlm(file);
        })().finally(() => (this.s.adopting = null));
        return this.s.adopting;
      })
      .catch(() => {}); // cancellations and failures are in the download state already
    return this.s.models;
  }

  /** The inspector's candidates for one token, on demand (candidatesAt.ts). */
  async candidates({ conversationId, messageId, index }: OpArg<"candidates">): Promise<OpResult<"candidates">> {
    if (this.s.active || this.s.adopting) throw new Error("Candidates are computed once the answer has ended");
    if (!this.s.slm) throw new Error("The local model is not loaded yet");
    const run = candidatesAt(this.s.slm, this.s.store.get(String(conversationId)), String(messageId), Number(index));
    this.s.inspecting = run.catch(() => undefined);
    return { candidates: await run };
  }

  async cancelDownload(_arg: OpArg<"cancelDownload"> = {}): Promise<ModelStatus> {
    await this.s.downloads.cancel();
    return this.s.models;
  }

  private get modelsDir(): string {
    return this.s.opts.modelsDir ?? path.join(this.s.opts.dataDir, "models");
  }

  /** Loads `source` as the SLM, reconnects the cloud for its vocabulary, and remembers the choice. */
  private async useSlm(source: string): Promise<void> {
    await this.loadSlm(source);
    if (this.s.models.slm.error) return;
    this.s.persist({ slm: source });
    await this.s.saving; // remembered before the choice is reported done (close() waits for it too)
    if (this.s.slm && this.s.cloudSettings.kind !== "none") await this.connectCloud();
  }

  private setSlmStage(stage: Partial<StageStatus>): void {
    this.s.models = { ...this.s.models, slm: { ...this.s.models.slm, ...stage } };
    this.s.emit({ type: "models", models: this.s.models });
  }

  private async loadSlm(source: string): Promise<void> {
    this.setSlmStage({ ...emptyStage(source) });
    try {
      const file = await resolveModelSource(source, {
        directory: this.modelsDir,
        onProgress: ({ totalSize, downloadedSize }) => this.setSlmStage({ progress: totalSize ? downloadedSize / totalSize : null }),
      });
      // a truncated file or a model larger than memory: a clear error now, not a failed or endless load
      await preflightModelFile(file);
      const model = await LocalModel.load(file, {
        contextSize: this.s.contextChoice ?? "model",
        hiddenState: true, // free, and what a learned router reads
      });
      const old = this.s.slm;
      this.s.slm = model;
      await old?.dispose();
      if (!this.s.opts.router) await this.chooseRouter(model);
      this.setSlmStage({ loaded: true, name: model.identity.name, progress: null, error: null });
    } catch (err) {
      // keep the previous model, if any, working: a bad file picked from disk must not break the chat
      this.setSlmStage({ loaded: !!this.s.slm, error: errorMessage(err), progress: null, name: this.s.slm?.identity.name ?? null });
    }
  }

  private get routersDir(): string {
    return path.join(this.s.opts.dataDir, "routers");
  }

  /** A router file for this SLM (the repo's or one learned here), else the confidence router while learning one. */
  private async chooseRouter(model: LocalModel): Promise<void> {
    await this.s.distiller?.dispose();
    this.s.distiller = null;
    const choice = loadRouterFor(model, { extraDirs: [this.routersDir] });
    this.s.router = choice.router;
    if (choice.kind === "confidence" && this.s.opts.selfDistill !== false) {
      this.s.distiller = new SelfDistiller(model, { ...this.s.opts.selfDistill, dir: this.routersDir });
      this.s.router = this.s.distiller.router;
    }
    this.s.models = { ...this.s.models, router: this.s.router.name };
  }

  /** After an answer: trains the distilled router when enough is collected; uses it from the next answer. */
  private async learnRouter(distiller: SelfDistiller): Promise<void> {
    const ev = await distiller.afterAnswer();
    if (!ev || distiller !== this.s.distiller || this.s.closed) return; // nothing due, or the SLM changed meanwhile
    if (ev.kind === "ready") {
      this.s.distiller = null;
      this.s.router = ev.router;
      this.s.models = { ...this.s.models, router: this.s.router.name };
      this.s.emit({ type: "models", models: this.s.models });
      this.s.notice(`The router now reads the SLM's hidden state instead of sorting its vocabulary for every token (${ev.description}).`);
    } else if (ev.kind === "failed") {
      this.s.notice(`Could not learn a faster router; the confidence router stays (${ev.error}).`);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Settings (settings.ts) and system prompts

  async getSettings(_arg: OpArg<"getSettings"> = {}): Promise<SettingsView> {
    const c = this.s.cloudSettings;
    return {
      tau: this.s.tau,
      theme: this.s.theme,
      cloud: { kind: c.kind, url: c.url, hasToken: !!c.token },
      tokenStorage: this.s.settings.secrets.kind,
      slm: this.s.models.slm.source,
      contextSize: this.s.contextChoice,
      loadedContextSize: this.s.slm?.contextSize ?? null,
      systemPrompt: this.s.defaultSystemPrompt,
      sampling: this.s.defaultSampling,
    };
  }

  /** Checks every value first (nothing changes if one is invalid), saves, then applies. */
  async updateSettings(patch: OpArg<"updateSettings">): Promise<SettingsView> {
    const p = checkSettingsPatch(patch);
    if (p.contextSize !== undefined && p.contextSize !== this.s.contextChoice && this.s.active) {
      throw new Error("Stop the current answer before changing the context size");
    }
    await this.s.settings.update(p);
    if (p.tau !== undefined) {
      this.s.tau = p.tau;
      this.s.emit({ type: "tau", tau: this.s.tau });
      await this.explicitTau();
    }
    if (p.theme !== undefined) this.s.theme = p.theme;
    if (p.systemPrompt !== undefined) this.s.defaultSystemPrompt = p.systemPrompt;
    if (p.sampling !== undefined) this.s.defaultSampling = p.sampling;
    if (p.contextSize !== undefined && p.contextSize !== this.s.contextChoice) {
      this.s.contextChoice = p.contextSize;
      // the context is made with the model: load it again at the new size
      if (this.s.slm && this.s.models.slm.source) await this.loadSlm(this.s.models.slm.source);
    }
    const view = await this.getSettings();
    this.s.emit({ type: "settings", settings: view });
    return view;
  }

  async setSystemPrompt({ conversationId, systemPrompt }: OpArg<"setSystemPrompt">): Promise<Conversation> {
    const conv = this.s.store.get(String(conversationId));
    if (systemPrompt !== null && (typeof systemPrompt !== "string" || systemPrompt.length > MAX_SYSTEM_PROMPT_CHARS)) {
      throw new Error(`A system prompt is text of at most ${MAX_SYSTEM_PROMPT_CHARS} characters`);
    }
    if (systemPrompt === null) delete conv.systemPrompt;
    else conv.systemPrompt = systemPrompt;
    conv.updatedAt = Date.now();
    await this.s.store.save(conv.id);
    this.s.emitConversations();
    return conv;
  }

  async setSampling({ conversationId, sampling }: OpArg<"setSampling">): Promise<Conversation> {
    const conv = this.s.store.get(String(conversationId));
    const checked = sampling === null ? null : checkSampling(sampling);
    if (checked === null) delete conv.sampling;
    else conv.sampling = checked;
    conv.updatedAt = Date.now();
    await this.s.store.save(conv.id);
    this.s.emitConversations();
    return conv;
  }

  /** The sampling a conversation's answers use: its own, or the app's default. */
  samplingOf(conv: Conversation): SamplingConfig {
    return conv.sampling ?? this.s.defaultSampling;
  }

  // ------------------------------------------------------------------------------------------------
  // Cloud

  async cloudStatus(_arg: OpArg<"cloudStatus"> = {}): Promise<CloudStatus> {
    return this.s.cloudStatusValue;
  }

  /**
   * Settings that cannot work (not a URL, not http(s), a malformed or too short token) are refused with
   * a clear error and change nothing; settings that fail to connect (unreachable, token refused, another
   * vocabulary) are kept, and the cloud status says why it is offline.
   */
  async setCloudSettings(s: OpArg<"setCloudSettings">): Promise<CloudStatus> {
    if (s.kind !== "tandem" && s.kind !== "none") throw new Error(`Unknown cloud kind ${JSON.stringify(s.kind)}`);
    if (this.s.active) throw new Error("Stop the current answer before changing the cloud");
    const url = String(s.url ?? "").trim();
    // an empty token field keeps the saved token (the UI never receives it back), but only for the same
    // server: a token is never sent to another host because the field was left empty
    const kept = sameServer(url, this.s.cloudSettings.url) ? this.s.cloudSettings.token : "";
    const token = s.token ? String(s.token) : kept;
    if (s.kind === "none") this.s.cloudSettings = { kind: "none", url, token };
    else this.s.cloudSettings = { kind: "tandem", ...checkCloudSettings({ url, token }) };
    const saved = this.s.cloudSettings;
    this.s.persist({ cloudKind: saved.kind, cloudUrl: saved.url }, async () => {
      if ((await this.s.settings.secrets.read().catch(() => null)) !== (saved.token || null))
        await this.s.settings.secrets.write(saved.token);
    });
    await this.connectCloud();
    return this.s.cloudStatusValue;
  }

  private setCloudStatus(state: CloudStatus["state"], detail: string | null, model: string | null = null): void {
    this.s.cloudStatusValue = this.s.statusFromSettings(state, detail, model);
    this.s.emit({ type: "cloud", cloud: this.s.cloudStatusValue });
  }

  private async connectCloud(): Promise<void> {
    const old = this.s.cloud;
    this.s.cloud = null;
    await old?.close();
    const s = this.s.cloudSettings;
    if (s.kind === "none" || !s.url) return this.setCloudStatus("disabled", s.kind === "none" ? null : "no URL set");
    let checked: { url: string; token: string };
    try {
      // settings from the command line or the environment reach here unchecked
      checked = checkCloudSettings(s);
    } catch (err) {
      return this.setCloudStatus("offline", errorMessage(err));
    }
    if (!this.s.slm) return this.setCloudStatus("offline", "the local model is not loaded");
    let client: TandemCloudClient;
    try {
      client = new TandemCloudClient({
        url: checked.url,
        token: checked.token || undefined,
        deadlineMs: this.s.opts.deadlineMs,
        // the cloud token's log-probability for the inspector, where it does not cost the server a
        // full-vocabulary sort per call that bounds how many users it serves (NextRequest.logprob)
        logprob: cheapOnVocabulary(this.s.slm.vocabSize),
        onStateChange: (state, detail) => {
          if (this.s.cloud !== client) return; // a replaced client's late news
          this.setCloudStatus(state === "unknown" ? "connecting" : state, detail ?? null, client.model?.name ?? null);
        },
      });
    } catch (err) {
      return this.setCloudStatus("offline", errorMessage(err));
    }
    this.s.cloud = client;
    this.setCloudStatus("connecting", null);
    try {
      const m = await client.connect(this.s.slm.identity);
      // shown beside the model: with a replica of this SLM the cloud answers whole routed stretches
      this.setCloudStatus(
        "online",
        client.replicated
          ? "the server follows this device's routed decoding (a replica of its SLM): one round trip per stretch of cloud tokens"
          : null,
        m.name,
      );
    } catch (err) {
      const refused = authFailure(err, checked.url, !!checked.token);
      if (refused || err instanceof VocabularyMismatchError || (err instanceof CloudCallError && err.reason === "vocab_mismatch")) {
        // a different vocabulary can never work token by token, and a refused token does not start
        // working by retrying: drop this cloud (no call per routed token into a wall), keep chatting locally
        this.s.cloud = null;
        await client.close();
      }
      this.setCloudStatus("offline", refused ?? errorMessage(err));
    }
  }
}

/** The settings form's values, checked: a clear error for the first invalid one. */
function checkSettingsPatch(patch: SettingsPatch): SettingsPatch {
  if (typeof patch !== "object" || patch === null) throw new Error("Settings must be an object");
  const out: SettingsPatch = {};
  if (patch.tau !== undefined) out.tau = validateTau(Number(patch.tau));
  if (patch.theme !== undefined) {
    if (patch.theme !== "system" && patch.theme !== "light" && patch.theme !== "dark")
      throw new Error(`Unknown theme ${JSON.stringify(patch.theme)}`);
    out.theme = patch.theme;
  }
  if (patch.contextSize !== undefined) {
    const n = patch.contextSize;
    if (n !== null && !(Number.isInteger(n) && n >= MIN_CONTEXT_SIZE && n <= MAX_CONTEXT_SIZE)) {
      throw new Error(`The context size is a whole number of tokens from ${MIN_CONTEXT_SIZE} to ${MAX_CONTEXT_SIZE} (or the model's own)`);
    }
    out.contextSize = n;
  }
  if (patch.systemPrompt !== undefined) {
    if (typeof patch.systemPrompt !== "string" || patch.systemPrompt.length > MAX_SYSTEM_PROMPT_CHARS) {
      throw new Error(`The system prompt is text of at most ${MAX_SYSTEM_PROMPT_CHARS} characters`);
    }
    out.systemPrompt = patch.systemPrompt;
  }
  if (patch.sampling !== undefined) out.sampling = checkSampling(patch.sampling);
  return out;
}

function checkSampling(value: unknown): SamplingConfig {
  const r = samplingConfigSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`Invalid sampling setting ${issue?.path.join(".") || ""}: ${issue?.message ?? "bad value"}`.replace("  ", " "));
  }
  return r.data;
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

const defaultSlmId = defaultSlm.id;

/** The catalogue's SLMs, smallest first; the catalogue's default SLM is the recommended one. */
export function defaultCatalogue(): CatalogueItem[] {
  return modelsForRole("slm")
    .map((m) => ({ id: m.id, name: m.name, sizeBytes: m.sizeBytes, uri: m.uri, recommended: m.id === defaultSlmId, license: m.license }))
    .sort((a, b) => a.sizeBytes - b.sizeBytes);
}

/**
 * Every operation of the table, bound to a service, for dispatch by name (IPC, WebSocket). Made from
 * BRIDGE_OPS: the service implements BridgeApi, so an operation is one method and nothing else to list.
 */
export function bindService(s: TandemService): BridgeApi {
  const bound = (op: BridgeOp) => (arg: never) => (s[op] as (a: never) => Promise<unknown>).call(s, arg);
  return Object.fromEntries(BRIDGE_OPS.map((op) => [op, bound(op)])) as BridgeApi;
}

function checkRequestId(requestId: unknown): void {
  if (typeof requestId !== "string" || !requestId || requestId.length > 100) throw new Error("Invalid request id");
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
