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
  BridgeEvent,
  BridgeListener,
  BridgeSnapshot,
  CloudSettings,
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
  Theme,
} from "../../shared/bridge.js";
import { BRIDGE_OPS, MAX_IMPORT_CHARS } from "../../shared/bridge.js";
import type { ChatMessage } from "../../shared/chat.js";
import type { AnswerSummary, TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter, validateTau, type Router } from "../../shared/router.js";
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
import { SelfDistiller, type SelfDistillOptions } from "./selfDistill.js";
import { MAX_CONTEXT_SIZE, MAX_SYSTEM_PROMPT_CHARS, MIN_CONTEXT_SIZE, SettingsStore, type SecretStore } from "./settings.js";
import { planPrompt, truncationNotice, type PlannedPrompt } from "./conversationPrompt.js";
import { lockDataFolder, type DataFolderLock } from "./dataLock.js";
import { ModelDownloads } from "./modelDownloads.js";
import { authFailure, checkCloudSettings, sameServer } from "./cloudSettings.js";
import { preflightModelFile } from "../../inference/modelPreflight.js";
import { errorMessage } from "../../shared/errors.js";
import { DEFAULT_CHAT_SAMPLING, resolveSampling, samplingConfigSchema, type SamplingConfig } from "../../shared/sampling.js";
import { CloudControl } from "./cloudControl/engineControl.js";
import { pairKey } from "./cloudControl/calibrationStore.js";

export interface ServiceOptions {
  /** where conversations (and downloaded models) live: the user's data folder */
  dataDir: string;
  /** where downloaded models go; default <dataDir>/models (the app passes a folder the user can see) */
  modelsDir?: string;
  /**
   * The SLM: a GGUF path or an hf: URI. Absent: the model the user last chose (remembered in the data
   * folder), or none yet — the first run, where the user picks one from the catalogue.
   */
  slm?: string | null;
  /** the downloadable SLMs; default: the catalogue's SLM entries */
  catalogue?: CatalogueItem[];
  /**
   * Given (a command-line flag): overrides the saved value for this run. Absent: the saved one.
   * Likewise `tau`, `contextSize`, `systemPrompt` and `slm`.
   */
  cloud?: CloudSettings;
  /** the cloud when none is given and none is saved (browser mode's in-process server) */
  cloudDefault?: CloudSettings;
  /** where the cloud token is kept; default a 0600 file in the data folder (settings.ts) */
  secrets?: SecretStore;
  /** the data folder's lock, when the caller took it before anything else (browser mode); released at close */
  dataLock?: DataFolderLock;
  /** the default system prompt for this run */
  systemPrompt?: string;
  /** the default sampling for this run (a command-line flag); absent: the saved one, else Balanced */
  sampling?: SamplingConfig;
  /** status of an LLM hosted in-process by the caller (browser mode); shown, not managed, here */
  llm?: StageStatus;
  tau?: number;
  maxTokens?: number;
  /** SLM candidates per token for the inspector */
  topK?: number;
  deadlineMs?: number;
  /** the SLM's context size; default: the saved one, else what the model supports within memory */
  contextSize?: number;
  /**
   * Pause between tokens, ms. Tiny test models answer in milliseconds, faster than a person (or a UI
   * test) can watch or press Stop; a pace makes the stream visible. 0 (no pause) for real models.
   */
  paceMs?: number;
  /** how often batched token deltas are pushed, ms */
  flushMs?: number;
  router?: Router;
  /**
   * Learning the distilled router from the user's answers when no router file matches the SLM
   * (selfDistill.ts): on by default; false turns it off; numbers override its thresholds (tests).
   */
  selfDistill?: false | Partial<Omit<SelfDistillOptions, "dir">>;
}

/**
 * Inspector extras that touch every logit, by default only where that is cheap. node-llama-cpp 3.21
 * gives the SLM's top-k only as the full probability map, ~70–90 ms a token on Qwen's 152k vocabulary
 * (docs/FACTS.md, bench a) — more than the step itself, undoing the distilled router's saving; and the
 * cloud token's log-probability costs the server a full sort per call. Free on small vocabularies.
 */
export const CHEAP_VOCAB_MAX = 32_768;
export const cheapOnVocabulary = (vocabSize: number): boolean => vocabSize <= CHEAP_VOCAB_MAX;
export const inspectorCandidates = (vocabSize: number): number => (cheapOnVocabulary(vocabSize) ? 5 : 0);

export const emptyStage = (source: string | null = null): StageStatus => ({
  source,
  name: null,
  loaded: false,
  error: null,
  progress: null,
});

interface ActiveAnswer {
  handle: AnswerHandle;
  abort: AbortController;
  pending: TokenEvent[];
  timer: NodeJS.Timeout | null;
  startedAt: number;
  done: Promise<void>;
}

export class TandemService implements BridgeApi {
  private readonly listeners = new Set<BridgeListener>();
  private slm: LocalModel | null = null;
  /** the learned router matching the SLM, else the confidence router (re-chosen when the SLM changes) */
  private router: Router;
  /** learning a distilled router while the confidence router routes; null once there is a router file */
  private distiller: SelfDistiller | null = null;
  private cloud: TandemCloudClient | null = null;
  private cloudSettings: CloudSettings;
  private cloudStatusValue: CloudStatus;
  private tau: number;
  private models: ModelStatus;
  private active: ActiveAnswer | null = null;
  private readonly totals: LiveStats["totals"] = {
    answers: 0,
    tokens: 0,
    cloudTokens: 0,
    fallbackTokens: 0,
    cloudCalls: 0,
    bytesUp: 0,
    bytesDown: 0,
  };
  private readonly notices: string[] = [];
  private closed = false;
  private theme: Theme;
  /** the chosen context size; null: the model's own */
  private contextChoice: number | null;
  private defaultSystemPrompt: string;
  private defaultSampling: SamplingConfig;
  /** per conversation, the first message the last answer read (the context window's start, contextWindow.ts) */
  private readonly keepFrom = new Map<string, number>();
  /** settings writes, one after another; close() waits for them */
  private saving: Promise<unknown> = Promise.resolve();
  /** A finished download being loaded and remembered: close() waits for it so the choice is never lost. */
  private adopting: Promise<void> | null = null;
  /** The inspector's re-evaluation of a stored answer on the SLM: an answer starting meanwhile waits for it. */
  private inspecting: Promise<unknown> = Promise.resolve();
  /** this engine's hold on its data folder, released by close() */
  private lock: DataFolderLock | null = null;
  /** target share, budgets, local-only, what the cloud has seen (cloudControl/) */
  private control!: CloudControl;
  private readonly downloads = new ModelDownloads((download) => {
    this.models = { ...this.models, download };
    this.emit({ type: "models", models: this.models });
  });

  private constructor(
    private readonly opts: ServiceOptions,
    private readonly store: ConversationStore,
    private readonly settings: SettingsStore,
    savedToken: string | null,
  ) {
    const saved = settings.get();
    this.router = opts.router ?? new ConfidenceRouter();
    this.tau = validateTau(opts.tau ?? saved.tau ?? 0.5);
    this.theme = saved.theme ?? "system";
    this.contextChoice = opts.contextSize ?? saved.contextSize ?? null;
    this.defaultSystemPrompt = opts.systemPrompt ?? saved.systemPrompt ?? "";
    this.defaultSampling = opts.sampling ?? saved.sampling ?? DEFAULT_CHAT_SAMPLING;
    const savedCloud: CloudSettings | undefined = saved.cloudKind
      ? { kind: saved.cloudKind, url: saved.cloudUrl ?? "", token: savedToken ?? "" }
      : undefined;
    this.cloudSettings = opts.cloud ?? savedCloud ?? opts.cloudDefault ?? { kind: "none", url: "", token: "" };
    this.cloudStatusValue = this.statusFromSettings("disabled", null);
    this.models = { slm: emptyStage(opts.slm ?? null), llm: opts.llm ?? emptyStage(), router: this.router.name, download: null };
    this.notices.push(...store.notices, ...settings.notices);
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
      const service = new TandemService(opts, store, settings, token);
      service.lock = lock;
      service.control = await CloudControl.open(opts.dataDir);
      service.notices.push(...service.control.notices);
      return service;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Loads the SLM given (or remembered) and connects the cloud; progress and errors land in the model status. */
  async loadInitialModels(): Promise<void> {
    const slm = this.opts.slm ?? this.settings.get().slm ?? null;
    if (slm && !this.closed) await this.loadSlm(slm);
    if (this.slm && !this.closed && this.cloudSettings.kind !== "none") await this.connectCloud();
  }

  subscribe(listener: BridgeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: BridgeEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // a broken listener (a closed socket) must not stop the answer for the others
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.adopting;
    if (this.active) {
      this.active.abort.abort();
      await this.active.done;
    }
    await this.distiller?.dispose();
    await this.saving;
    await this.store.flush();
    await this.cloud?.close();
    await this.slm?.dispose();
    this.listeners.clear();
    await this.lock?.release();
  }

  /** The LLM status of an in-process server changed (browser mode host). */
  setLlmStatus(stage: StageStatus): void {
    this.models = { ...this.models, llm: stage };
    this.emit({ type: "models", models: this.models });
  }

  // ------------------------------------------------------------------------------------------------
  // Snapshot, τ, stats

  async snapshot(_arg: OpArg<"snapshot"> = {}): Promise<BridgeSnapshot> {
    return {
      tau: this.tau,
      conversations: this.store.list(),
      models: this.models,
      cloud: this.cloudStatusValue,
      stats: this.liveStats(),
      notices: [...this.notices],
      activeRequest: this.active
        ? {
            requestId: this.active.handle.requestId,
            conversationId: this.active.handle.conversationId,
            messageId: this.active.handle.messageId,
          }
        : null,
    };
  }

  async setTau({ tau }: OpArg<"setTau">): Promise<OpResult<"setTau">> {
    // the decoder reads τ through a function before every token: this takes effect on the next one
    this.tau = validateTau(Number(tau));
    this.emit({ type: "tau", tau: this.tau });
    this.persist({ tau: this.tau });
    await this.explicitTau();
    return { tau: this.tau };
  }

  async stats(_arg: OpArg<"stats"> = {}): Promise<LiveStats> {
    return this.liveStats();
  }

  private liveStats(): LiveStats {
    let active: LiveStats["active"] = null;
    if (this.active) {
      const conv = this.store.has(this.active.handle.conversationId) ? this.store.get(this.active.handle.conversationId) : null;
      const msg = conv?.messages.find((m) => m.id === this.active!.handle.messageId);
      const tokens = msg?.tokens ?? [];
      const secs = (performance.now() - this.active.startedAt) / 1000;
      active = {
        requestId: this.active.handle.requestId,
        tokens: tokens.length,
        cloudTokens: tokens.filter((t) => t.origin === "cloud").length,
        fallbackTokens: tokens.filter((t) => t.origin === "fallback").length,
        tokensPerSecond: secs > 0 ? tokens.length / secs : 0,
      };
    }
    return { active, totals: { ...this.totals } };
  }

  // ------------------------------------------------------------------------------------------------
  // Conversations

  async listConversations(_arg: OpArg<"listConversations"> = {}): Promise<OpResult<"listConversations">> {
    return this.store.list();
  }

  async getConversation({ id }: OpArg<"getConversation">): Promise<Conversation> {
    return this.store.get(String(id));
  }

  async createConversation({ title }: OpArg<"createConversation">): Promise<Conversation> {
    const c = await this.store.create(typeof title === "string" && title.trim() ? title.trim().slice(0, 200) : undefined);
    await this.control.created(c.id);
    this.emitConversations();
    return c;
  }

  async renameConversation({ id, title }: OpArg<"renameConversation">): Promise<OpResult<"renameConversation">> {
    const meta = await this.store.rename(String(id), String(title));
    this.emitConversations();
    return meta;
  }

  async deleteConversation({ id }: OpArg<"deleteConversation">): Promise<OpResult<"deleteConversation">> {
    if (this.active?.handle.conversationId === id) await this.stopActive();
    const deleted = await this.store.delete(String(id));
    this.keepFrom.delete(String(id));
    // the cloud forgets it too (best effort: an offline cloud evicts the idle session anyway)
    if (deleted) await this.control.drop(String(id), this.cloud);
    this.emitConversations();
    return { deleted };
  }

  async exportConversation({ id, format }: OpArg<"exportConversation">): Promise<OpResult<"exportConversation">> {
    if (format !== "markdown" && format !== "json") throw new Error(`Unknown export format ${JSON.stringify(format)}`);
    return exportConversation(this.store.get(String(id)), format);
  }

  async exportAll(_arg: OpArg<"exportAll"> = {}): Promise<OpResult<"exportAll">> {
    return exportAll(this.store.all());
  }

  /** Checks the whole file first (conversationArchive.ts); then adds every conversation, or none. */
  async importConversations({ content, dryRun }: OpArg<"importConversations">): Promise<OpResult<"importConversations">> {
    if (typeof content !== "string" || content.length > MAX_IMPORT_CHARS) throw new Error("An import is the text of an export file");
    const plan = readImport(content, (id) => this.store.has(id));
    if (dryRun === true) return { imported: plan.conversations.map(metaOf), renamed: plan.renamed };
    await this.store.addAll(plan.conversations);
    this.emitConversations();
    return { imported: plan.conversations.map(metaOf), renamed: plan.renamed };
  }

  async searchConversations({ query }: OpArg<"searchConversations">): Promise<OpResult<"searchConversations">> {
    return searchConversations(this.store.all(), String(query ?? "").slice(0, 500));
  }

  private emitConversations(): void {
    this.emit({ type: "conversations", conversations: this.store.list() });
  }

  // ------------------------------------------------------------------------------------------------
  // Answers

  async send({ requestId, conversationId, text }: OpArg<"send">): Promise<AnswerHandle> {
    // validate everything first, change after: a refused request leaves the conversation as it was
    const conv = this.store.get(String(conversationId));
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
    const conv = this.store.get(String(conversationId));
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
    const conv = this.store.get(String(conversationId));
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
    const conv = this.store.get(String(conversationId));
    checkRequestId(requestId);
    this.assertCanAnswer();
    const at = conv.messages.length - 1;
    const last = conv.messages[at];
    if (last?.role !== "assistant" || last.summary?.stopReason !== "max-tokens" || at < 1) {
      throw new Error("Only an answer that stopped at the token limit can be continued");
    }
    const done = last.tokens ?? [];
    const planned = this.planFor(conv, conv.messages.slice(0, at), this.maxTokens + done.length);
    const prompt = [...planned.tokens, ...done.map((t) => t.tokenId)];
    if (prompt.length + Math.min(this.maxTokens, 16) > planned.plan.usage.window) {
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
    const conv = this.store.get(String(conversationId));
    if (this.active?.handle.conversationId === conv.id) throw new Error("Stop the current answer before switching versions");
    const at = conv.messages.findIndex((m) => m.id === messageId);
    if (at < 0) throw new Error("No such message in this conversation");
    const path = selectVersion(conv.messages, at, Number(version));
    const before = { messages: conv.messages, updatedAt: conv.updatedAt };
    Object.assign(conv, { messages: path, updatedAt: Date.now() });
    try {
      await this.store.save(conv.id);
    } catch (err) {
      Object.assign(conv, before); // the disk still has the other version active: so does the app
      throw err;
    }
    this.keepFrom.delete(conv.id); // another path: its window is planned afresh
    this.emitConversations();
    return conv;
  }

  async stop({ requestId }: OpArg<"stop">): Promise<OpResult<"stop">> {
    if (!this.active || this.active.handle.requestId !== requestId) return { stopped: false };
    await this.stopActive();
    return { stopped: true };
  }

  private async stopActive(): Promise<void> {
    const a = this.active;
    if (!a) return;
    a.abort.abort();
    await a.done;
  }

  private assertCanAnswer(): void {
    if (this.closed) throw new Error("The engine is shutting down");
    if (!this.slm) throw new Error(this.models.slm.error ?? "The local model is not loaded yet");
    if (this.active) throw new Error("An answer is already being generated; stop it first");
  }

  /**
   * The prompt for answering `messages` (the conversation as it will be) under the context policy:
   * the system prompt, then the newest turns that fit (contextWindow.ts). Changes nothing.
   */
  private planFor(conv: Conversation, messages: readonly StoredMessage[], maxTokens = this.maxTokens): PlannedPrompt {
    const system = typeof conv.systemPrompt === "string" ? conv.systemPrompt : this.defaultSystemPrompt;
    const turns: ChatMessage[] = messages.map((m) => ({ role: m.role, content: m.content }));
    return planPrompt(this.slm!, { system, turns, keepFrom: this.keepFrom.get(conv.id) ?? 0, maxTokens });
  }

  private get maxTokens(): number {
    return this.opts.maxTokens ?? 256;
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
    const slm = this.slm!;
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
    this.active = active;
    try {
      await this.store.save(conv.id);
    } catch (err) {
      // nothing started: the engine takes the next message, and the conversation is what the disk holds
      this.active = null;
      Object.assign(conv, before);
      throw new Error(`Could not save the conversation, so the answer was not started (${errorMessage(err)})`, { cause: err });
    }
    this.keepFrom.set(conv.id, planned.plan.keepFrom);
    if (usage.truncated) this.notice(truncationNotice(usage.window));
    this.emit({ type: "answer-start", handle, tau: this.tau, user, at: next.at, answer: { ...assistant }, context: usage });
    this.emitConversations();
    // the SLM has one sequence: an inspector re-evaluation still running finishes first
    active.done = this.inspecting.then(() => this.runAnswer(slm, active, conv, assistant, planned.tokens));
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
      this.emit({ type: "answer-delta", requestId, conversationId, messageId, tokens });
      this.emit({ type: "stats", stats: this.liveStats() });
    };
    this.distiller?.beginAnswer();
    let cloudControl: { end(): Promise<void> } | null = null;
    try {
      const control = this.control.begin(conversationId, this.cloud, this.cloudSettings.url || null, this.pairKey());
      cloudControl = control;
      const decoder = new CollaborativeDecoder(slm, this.router, control.peer);
      const answer = control.wrap(
        decoder.generate(prompt, {
          tau: control.tau(() => this.tau),
          maxTokens: this.maxTokens,
          signal: a.abort.signal,
          topK: this.opts.topK ?? inspectorCandidates(slm.vocabSize),
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
          await this.store.appendToken(conversationId, messageId, ev);
        } catch (err) {
          if (!journalFailed) this.notice(`Could not save the answer as it streams (${errorMessage(err)}); it will be saved when it ends.`);
          journalFailed = true;
        }
        a.pending.push(ev);
        a.timer ??= setTimeout(flush, this.opts.flushMs ?? 16);
        if (this.opts.paceMs) await sleep(this.opts.paceMs, a.abort.signal);
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
    this.active = null;
    try {
      await this.store.save(conversationId);
    } catch (err) {
      this.notice(`Could not save the conversation: ${errorMessage(err)}`);
    }
    if (msg.status === "error") this.emit({ type: "answer-error", requestId, conversationId, messageId, error: msg.error! });
    else this.emit({ type: "answer-end", requestId, conversationId, message: msg });
    this.emit({ type: "stats", stats: this.liveStats() });
    this.emitConversations();
    if (this.distiller) void this.learnRouter(this.distiller);
  }

  private addTotals(tokens: TokenEvent[], s: { cloudCalls: number; bytesUp: number; bytesDown: number }): void {
    this.totals.answers++;
    this.totals.tokens += tokens.length;
    this.totals.cloudTokens += tokens.filter((t) => t.origin === "cloud").length;
    this.totals.fallbackTokens += tokens.filter((t) => t.origin === "fallback").length;
    this.totals.cloudCalls += s.cloudCalls;
    this.totals.bytesUp += s.bytesUp;
    this.totals.bytesDown += s.bytesDown;
  }

  private notice(message: string): void {
    this.notices.push(message);
    this.emit({ type: "notice", message });
  }

  // ------------------------------------------------------------------------------------------------
  // Cloud controls (cloudControl/): target share, budgets, local-only, what the cloud has seen, Forget

  /** The model pair a calibration belongs to: the SLM, the router scoring it, the cloud's model. */
  private pairKey(): string {
    return pairKey({ slm: this.slm?.identity.name ?? "none", router: this.router.name, cloud: this.cloud?.model?.name ?? null });
  }

  private controlView() {
    return this.control.view(this.slm ? this.pairKey() : null, this.tau);
  }

  async cloudControl(_arg: OpArg<"cloudControl"> = {}): Promise<OpResult<"cloudControl">> {
    return this.controlView();
  }

  async updateCloudControl(patch: OpArg<"updateCloudControl">): Promise<OpResult<"updateCloudControl">> {
    await this.control.update(patch);
    const view = this.controlView();
    this.emit({ type: "cloud-control", control: view });
    return view;
  }

  /** An explicit τ turns a target share off: the last one set rules. */
  private async explicitTau(): Promise<void> {
    if (this.control.store.settings.targetShare === null) return;
    await this.updateCloudControl({ targetShare: null }).catch((err) =>
      this.notice(`Could not save the cloud controls: ${errorMessage(err)}`),
    );
  }

  async cloudSeen({ conversationId }: OpArg<"cloudSeen">): Promise<OpResult<"cloudSeen">> {
    this.store.get(String(conversationId)); // an unknown conversation is an error, not an empty record
    return this.control.seen(String(conversationId));
  }

  async setLocalOnly({ conversationId, localOnly }: OpArg<"setLocalOnly">): Promise<OpResult<"setLocalOnly">> {
    this.store.get(String(conversationId));
    const seen = await this.control.setLocalOnly(String(conversationId), localOnly === true);
    this.emit({ type: "cloud-seen", seen });
    return seen;
  }

  async forgetCloud({ conversationId }: OpArg<"forgetCloud">): Promise<OpResult<"forgetCloud">> {
    this.store.get(String(conversationId));
    if (this.active?.handle.conversationId === conversationId) throw new Error("Stop the current answer before asking the cloud to forget");
    const seen = await this.control.forget(String(conversationId), this.cloud);
    this.emit({ type: "cloud-seen", seen });
    return seen;
  }

  /** After an answer: what the cloud saw of it is recorded, the calibration kept; the UI is told. */
  private async endCloudControl(control: { end(): Promise<void> } | null, conversationId: string): Promise<void> {
    if (!control) return;
    try {
      await control.end();
    } catch (err) {
      this.notice(`Could not save what the cloud has seen: ${errorMessage(err)}`);
    }
    this.emit({ type: "cloud-seen", seen: this.control.seen(conversationId) });
    this.emit({ type: "cloud-control", control: this.controlView() });
  }

  // ------------------------------------------------------------------------------------------------
  // Models

  async modelStatus(_arg: OpArg<"modelStatus"> = {}): Promise<ModelStatus> {
    return this.models;
  }

  async openLocalModel({ path: file }: OpArg<"openLocalModel">): Promise<ModelStatus> {
    if (this.active) throw new Error("Stop the current answer before changing the model");
    await this.useSlm(String(file));
    return this.models;
  }

  /** The file dialog is the desktop app's (its main process answers this); the engine has none. */
  async chooseLocalModel(_arg: OpArg<"chooseLocalModel"> = {}): Promise<ModelStatus | null> {
    throw new Error("Choosing a file needs the desktop app: type the model file's full path instead");
  }

  async catalogue(_arg: OpArg<"catalogue"> = {}): Promise<CatalogueItem[]> {
    return this.opts.catalogue ?? defaultCatalogue();
  }

  async downloadModel({ id }: OpArg<"downloadModel">): Promise<ModelStatus> {
    const item = (await this.catalogue()).find((c) => c.id === id);
    if (!item) throw new Error(`No model ${JSON.stringify(id)} in the catalogue`);
    if (this.downloads.status?.status === "downloading") throw new Error("A download is already running; cancel it first");
    // runs in the background: progress arrives as `models` events; the model is used once complete
    void this.downloads
      .download({ id: item.id, uri: item.uri, dir: this.modelsDir })
      .then((file) => {
        if (this.closed) return;
        this.adopting = (async () => {
          if (this.active) await this.stopActive();
          await this.useSlm(file);
        })().finally(() => (this.adopting = null));
        return this.adopting;
      })
      .catch(() => {}); // cancellations and failures are in the download state already
    return this.models;
  }

  /** The inspector's candidates for one token, on demand (candidatesAt.ts). */
  async candidates({ conversationId, messageId, index }: OpArg<"candidates">): Promise<OpResult<"candidates">> {
    if (this.active || this.adopting) throw new Error("Candidates are computed once the answer has ended");
    if (!this.slm) throw new Error("The local model is not loaded yet");
    const run = candidatesAt(this.slm, this.store.get(String(conversationId)), String(messageId), Number(index));
    this.inspecting = run.catch(() => undefined);
    return { candidates: await run };
  }

  async cancelDownload(_arg: OpArg<"cancelDownload"> = {}): Promise<ModelStatus> {
    await this.downloads.cancel();
    return this.models;
  }

  private get modelsDir(): string {
    return this.opts.modelsDir ?? path.join(this.opts.dataDir, "models");
  }

  /** Loads `source` as the SLM, reconnects the cloud for its vocabulary, and remembers the choice. */
  private async useSlm(source: string): Promise<void> {
    await this.loadSlm(source);
    if (this.models.slm.error) return;
    this.persist({ slm: source });
    await this.saving; // remembered before the choice is reported done (close() waits for it too)
    if (this.slm && this.cloudSettings.kind !== "none") await this.connectCloud();
  }

  private setSlmStage(stage: Partial<StageStatus>): void {
    this.models = { ...this.models, slm: { ...this.models.slm, ...stage } };
    this.emit({ type: "models", models: this.models });
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
        contextSize: this.contextChoice ?? "model",
        hiddenState: true, // free, and what a learned router reads
      });
      const old = this.slm;
      this.slm = model;
      await old?.dispose();
      if (!this.opts.router) await this.chooseRouter(model);
      this.setSlmStage({ loaded: true, name: model.identity.name, progress: null, error: null });
    } catch (err) {
      // keep the previous model, if any, working: a bad file picked from disk must not break the chat
      this.setSlmStage({ loaded: !!this.slm, error: errorMessage(err), progress: null, name: this.slm?.identity.name ?? null });
    }
  }

  private get routersDir(): string {
    return path.join(this.opts.dataDir, "routers");
  }

  /** A router file for this SLM (the repo's or one learned here), else the confidence router while learning one. */
  private async chooseRouter(model: LocalModel): Promise<void> {
    await this.distiller?.dispose();
    this.distiller = null;
    const choice = loadRouterFor(model, { extraDirs: [this.routersDir] });
    this.router = choice.router;
    if (choice.kind === "confidence" && this.opts.selfDistill !== false) {
      this.distiller = new SelfDistiller(model, { ...this.opts.selfDistill, dir: this.routersDir });
      this.router = this.distiller.router;
    }
    this.models = { ...this.models, router: this.router.name };
  }

  /** After an answer: trains the distilled router when enough is collected; uses it from the next answer. */
  private async learnRouter(distiller: SelfDistiller): Promise<void> {
    const ev = await distiller.afterAnswer();
    if (!ev || distiller !== this.distiller || this.closed) return; // nothing due, or the SLM changed meanwhile
    if (ev.kind === "ready") {
      this.distiller = null;
      this.router = ev.router;
      this.models = { ...this.models, router: this.router.name };
      this.emit({ type: "models", models: this.models });
      this.notice(`The router now reads the SLM's hidden state instead of sorting its vocabulary for every token (${ev.description}).`);
    } else if (ev.kind === "failed") {
      this.notice(`Could not learn a faster router; the confidence router stays (${ev.error}).`);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Settings (settings.ts) and system prompts

  async getSettings(_arg: OpArg<"getSettings"> = {}): Promise<SettingsView> {
    const c = this.cloudSettings;
    return {
      tau: this.tau,
      theme: this.theme,
      cloud: { kind: c.kind, url: c.url, hasToken: !!c.token },
      tokenStorage: this.settings.secrets.kind,
      slm: this.models.slm.source,
      contextSize: this.contextChoice,
      loadedContextSize: this.slm?.contextSize ?? null,
      systemPrompt: this.defaultSystemPrompt,
      sampling: this.defaultSampling,
    };
  }

  /** Checks every value first (nothing changes if one is invalid), saves, then applies. */
  async updateSettings(patch: OpArg<"updateSettings">): Promise<SettingsView> {
    const p = checkSettingsPatch(patch);
    if (p.contextSize !== undefined && p.contextSize !== this.contextChoice && this.active) {
      throw new Error("Stop the current answer before changing the context size");
    }
    await this.settings.update(p);
    if (p.tau !== undefined) {
      this.tau = p.tau;
      this.emit({ type: "tau", tau: this.tau });
      await this.explicitTau();
    }
    if (p.theme !== undefined) this.theme = p.theme;
    if (p.systemPrompt !== undefined) this.defaultSystemPrompt = p.systemPrompt;
    if (p.sampling !== undefined) this.defaultSampling = p.sampling;
    if (p.contextSize !== undefined && p.contextSize !== this.contextChoice) {
      this.contextChoice = p.contextSize;
      // the context is made with the model: load it again at the new size
      if (this.slm && this.models.slm.source) await this.loadSlm(this.models.slm.source);
    }
    const view = await this.getSettings();
    this.emit({ type: "settings", settings: view });
    return view;
  }

  async setSystemPrompt({ conversationId, systemPrompt }: OpArg<"setSystemPrompt">): Promise<Conversation> {
    const conv = this.store.get(String(conversationId));
    if (systemPrompt !== null && (typeof systemPrompt !== "string" || systemPrompt.length > MAX_SYSTEM_PROMPT_CHARS)) {
      throw new Error(`A system prompt is text of at most ${MAX_SYSTEM_PROMPT_CHARS} characters`);
    }
    if (systemPrompt === null) delete conv.systemPrompt;
    else conv.systemPrompt = systemPrompt;
    conv.updatedAt = Date.now();
    await this.store.save(conv.id);
    this.emitConversations();
    return conv;
  }

  async setSampling({ conversationId, sampling }: OpArg<"setSampling">): Promise<Conversation> {
    const conv = this.store.get(String(conversationId));
    const checked = sampling === null ? null : checkSampling(sampling);
    if (checked === null) delete conv.sampling;
    else conv.sampling = checked;
    conv.updatedAt = Date.now();
    await this.store.save(conv.id);
    this.emitConversations();
    return conv;
  }

  /** The sampling a conversation's answers use: its own, or the app's default. */
  samplingOf(conv: Conversation): SamplingConfig {
    return conv.sampling ?? this.defaultSampling;
  }

  /** Saves settings in the background, in order; a failing disk is a notice, never an error of the operation. */
  private persist(patch: Parameters<SettingsStore["update"]>[0], after?: () => Promise<void>): void {
    this.saving = this.saving
      .then(() => this.settings.update(patch))
      .then(after)
      .catch((err) => this.notice(`Could not save the settings: ${errorMessage(err)}`));
  }

  // ------------------------------------------------------------------------------------------------
  // Cloud

  async cloudStatus(_arg: OpArg<"cloudStatus"> = {}): Promise<CloudStatus> {
    return this.cloudStatusValue;
  }

  /**
   * Settings that cannot work (not a URL, not http(s), a malformed or too short token) are refused with
   * a clear error and change nothing; settings that fail to connect (unreachable, token refused, another
   * vocabulary) are kept, and the cloud status says why it is offline.
   */
  async setCloudSettings(s: OpArg<"setCloudSettings">): Promise<CloudStatus> {
    if (s.kind !== "tandem" && s.kind !== "none") throw new Error(`Unknown cloud kind ${JSON.stringify(s.kind)}`);
    if (this.active) throw new Error("Stop the current answer before changing the cloud");
    const url = String(s.url ?? "").trim();
    // an empty token field keeps the saved token (the UI never receives it back), but only for the same
    // server: a token is never sent to another host because the field was left empty
    const kept = sameServer(url, this.cloudSettings.url) ? this.cloudSettings.token : "";
    const token = s.token ? String(s.token) : kept;
    if (s.kind === "none") this.cloudSettings = { kind: "none", url, token };
    else this.cloudSettings = { kind: "tandem", ...checkCloudSettings({ url, token }) };
    const saved = this.cloudSettings;
    this.persist({ cloudKind: saved.kind, cloudUrl: saved.url }, async () => {
      if ((await this.settings.secrets.read().catch(() => null)) !== (saved.token || null)) await this.settings.secrets.write(saved.token);
    });
    await this.connectCloud();
    return this.cloudStatusValue;
  }

  private statusFromSettings(state: CloudStatus["state"], detail: string | null, model: string | null = null): CloudStatus {
    const s = this.cloudSettings;
    return { kind: s.kind, url: s.url, hasToken: !!s.token, state, detail, model };
  }

  private setCloudStatus(state: CloudStatus["state"], detail: string | null, model: string | null = null): void {
    this.cloudStatusValue = this.statusFromSettings(state, detail, model);
    this.emit({ type: "cloud", cloud: this.cloudStatusValue });
  }

  private async connectCloud(): Promise<void> {
    const old = this.cloud;
    this.cloud = null;
    await old?.close();
    const s = this.cloudSettings;
    if (s.kind === "none" || !s.url) return this.setCloudStatus("disabled", s.kind === "none" ? null : "no URL set");
    let checked: { url: string; token: string };
    try {
      // settings from the command line or the environment reach here unchecked
      checked = checkCloudSettings(s);
    } catch (err) {
      return this.setCloudStatus("offline", errorMessage(err));
    }
    if (!this.slm) return this.setCloudStatus("offline", "the local model is not loaded");
    let client: TandemCloudClient;
    try {
      client = new TandemCloudClient({
        url: checked.url,
        token: checked.token || undefined,
        deadlineMs: this.opts.deadlineMs,
        // the cloud token's log-probability for the inspector, where it does not cost the server a
        // full-vocabulary sort per call that bounds how many users it serves (NextRequest.logprob)
        logprob: cheapOnVocabulary(this.slm.vocabSize),
        onStateChange: (state, detail) => {
          if (this.cloud !== client) return; // a replaced client's late news
          this.setCloudStatus(state === "unknown" ? "connecting" : state, detail ?? null, client.model?.name ?? null);
        },
      });
    } catch (err) {
      return this.setCloudStatus("offline", errorMessage(err));
    }
    this.cloud = client;
    this.setCloudStatus("connecting", null);
    try {
      const m = await client.connect(this.slm.identity);
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
        this.cloud = null;
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
