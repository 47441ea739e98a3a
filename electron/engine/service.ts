/**
 * The engine service: implements the bridge's function table (shared/bridge.ts) over the engine.
 * Hosted by Electron's main process (electron/main.ts) or by browser mode's Node process (web/server.ts);
 * imports no `electron`, so tests drive it directly.
 *
 * It holds the SLM, the router, the cloud client, τ and the conversations. One answer runs at a time
 * (the SLM has one KV-cached sequence); each of its tokens is committed to the conversation's journal
 * (conversationStore.ts) before it is pushed, in batched deltas, so a token the UI shows survives a crash.
 *
 * This class is a façade: it opens and closes the engine and delegates each operation to its concern,
 * all over one shared state (engineState.ts): answers.ts, conversationOps.ts, settingsOps.ts, models.ts,
 * cloudConnection.ts and cloudControls.ts.
 */
import type {
  BridgeApi,
  BridgeOp,
  BridgeListener,
  BridgeSnapshot,
  Conversation,
  LiveStats,
  OpArg,
  OpResult,
  StageStatus,
} from "../../shared/bridge.js";
import { BRIDGE_OPS } from "../../shared/bridge.js";
import { ConversationStore } from "./conversationStore.js";
import type { LocalModel } from "../../inference/localModel.js";
import { SettingsStore } from "./settings.js";
import { lockDataFolder } from "./dataLock.js";
import type { SamplingConfig } from "../../shared/sampling.js";
import { CloudControl } from "./cloudControl/engineControl.js";
import { EngineState } from "./engineState.js";
import type { ServiceOptions } from "./serviceOptions.js";
import { CloudConnection } from "./cloudConnection.js";
import { CloudControls } from "./cloudControls.js";
import { Models } from "./models.js";
import { Answers } from "./answers.js";
import { ConversationOps } from "./conversationOps.js";
import { SettingsOps } from "./settingsOps.js";

export { emptyStage } from "./engineState.js";
export { CHEAP_VOCAB_MAX, cheapOnVocabulary, inspectorCandidates } from "./inspectorCost.js";
export type { ServiceOptions } from "./serviceOptions.js";
export { defaultCatalogue } from "./models.js";

export class TandemService implements BridgeApi {
  private readonly connection: CloudConnection;
  private readonly controls: CloudControls;
  private readonly models: Models;
  private readonly answers: Answers;
  private readonly conversations: ConversationOps;
  private readonly settingsOps: SettingsOps;

  private constructor(private readonly s: EngineState) {
    this.connection = new CloudConnection(s);
    this.controls = new CloudControls(s);
    this.models = new Models(s, this.connection);
    this.answers = new Answers(s, this.controls, this.models);
    this.conversations = new ConversationOps(s);
    this.settingsOps = new SettingsOps(s, this.models, this.controls);
  }

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
      if (opts.freshTargetShare !== undefined && opts.tau === undefined && settings.get().tau === undefined)
        state.control.store.startWith({ targetShare: opts.freshTargetShare });
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
    if (slm && !this.s.closed) await this.models.loadSlm(slm);
    if (this.s.slm && !this.s.closed && this.s.cloudSettings.kind !== "none") await this.connection.connectCloud();
    void this.controls.calibrateIfNeeded();
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
    await this.s.inspecting; // an inspector re-evaluation or a calibration on the SLM (they stop at `closed`)
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

  async snapshot(_arg: OpArg<"snapshot"> = {}): Promise<BridgeSnapshot> {
    return {
      tau: this.s.tau,
      conversations: this.s.store.list(),
      models: this.s.models,
      cloud: this.s.cloudStatusValue,
      stats: this.answers.liveStats(),
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

  async stats(_arg: OpArg<"stats"> = {}): Promise<LiveStats> {
    return this.answers.liveStats();
  }

  /** The sampling a conversation's answers use: its own, or the app's default. */
  samplingOf(conv: Conversation): SamplingConfig {
    return this.s.samplingOf(conv);
  }

  // ------------------------------------------------------------------------------------------------
  // The bridge's operations, each delegated to its concern

  send(arg: OpArg<"send">): Promise<OpResult<"send">> {
    return this.answers.send(arg);
  }

  stop(arg: OpArg<"stop">): Promise<OpResult<"stop">> {
    return this.answers.stop(arg);
  }

  regenerate(arg: OpArg<"regenerate">): Promise<OpResult<"regenerate">> {
    return this.answers.regenerate(arg);
  }

  editAndResend(arg: OpArg<"editAndResend">): Promise<OpResult<"editAndResend">> {
    return this.answers.editAndResend(arg);
  }

  async continueAnswer(arg: OpArg<"continueAnswer">): Promise<OpResult<"continueAnswer">> {
    this.assertTokensFitModel(arg.conversationId);
    return this.answers.continueAnswer(arg);
  }

  listConversations(arg: OpArg<"listConversations"> = {}): Promise<OpResult<"listConversations">> {
    return this.conversations.listConversations(arg);
  }

  getConversation(arg: OpArg<"getConversation">): Promise<OpResult<"getConversation">> {
    return this.conversations.getConversation(arg);
  }

  createConversation(arg: OpArg<"createConversation">): Promise<OpResult<"createConversation">> {
    return this.conversations.createConversation(arg);
  }

  renameConversation(arg: OpArg<"renameConversation">): Promise<OpResult<"renameConversation">> {
    return this.conversations.renameConversation(arg);
  }

  deleteConversation(arg: OpArg<"deleteConversation">): Promise<OpResult<"deleteConversation">> {
    return this.conversations.deleteConversation(arg);
  }

  exportConversation(arg: OpArg<"exportConversation">): Promise<OpResult<"exportConversation">> {
    return this.conversations.exportConversation(arg);
  }

  exportAll(arg: OpArg<"exportAll"> = {}): Promise<OpResult<"exportAll">> {
    return this.conversations.exportAll(arg);
  }

  importConversations(arg: OpArg<"importConversations">): Promise<OpResult<"importConversations">> {
    return this.conversations.importConversations(arg);
  }

  searchConversations(arg: OpArg<"searchConversations">): Promise<OpResult<"searchConversations">> {
    return this.conversations.searchConversations(arg);
  }

  selectVersion(arg: OpArg<"selectVersion">): Promise<OpResult<"selectVersion">> {
    return this.conversations.selectVersion(arg);
  }

  setSystemPrompt(arg: OpArg<"setSystemPrompt">): Promise<OpResult<"setSystemPrompt">> {
    return this.conversations.setSystemPrompt(arg);
  }

  setSampling(arg: OpArg<"setSampling">): Promise<OpResult<"setSampling">> {
    return this.conversations.setSampling(arg);
  }

  setTau(arg: OpArg<"setTau">): Promise<OpResult<"setTau">> {
    return this.settingsOps.setTau(arg);
  }

  getSettings(arg: OpArg<"getSettings"> = {}): Promise<OpResult<"getSettings">> {
    return this.settingsOps.getSettings(arg);
  }

  updateSettings(arg: OpArg<"updateSettings">): Promise<OpResult<"updateSettings">> {
    return this.settingsOps.updateSettings(arg);
  }

  modelStatus(arg: OpArg<"modelStatus"> = {}): Promise<OpResult<"modelStatus">> {
    return this.models.modelStatus(arg);
  }

  openLocalModel(arg: OpArg<"openLocalModel">): Promise<OpResult<"openLocalModel">> {
    return this.models.openLocalModel(arg);
  }

  chooseLocalModel(arg: OpArg<"chooseLocalModel"> = {}): Promise<OpResult<"chooseLocalModel">> {
    return this.models.chooseLocalModel(arg);
  }

  catalogue(arg: OpArg<"catalogue"> = {}): Promise<OpResult<"catalogue">> {
    return this.models.catalogue(arg);
  }

  downloadModel(arg: OpArg<"downloadModel">): Promise<OpResult<"downloadModel">> {
    return this.models.downloadModel(arg);
  }

  cancelDownload(arg: OpArg<"cancelDownload"> = {}): Promise<OpResult<"cancelDownload">> {
    return this.models.cancelDownload(arg);
  }

  async candidates(arg: OpArg<"candidates">): Promise<OpResult<"candidates">> {
    this.assertTokensFitModel(arg.conversationId);
    return this.models.candidates(arg);
  }

  /**
   * The two operations that feed an answer's stored token ids back into the SLM (the rest re-tokenise
   * the text): ids from a file or an import that the loaded model does not have are refused here,
   * before anything changes — llama.cpp's "Eval has failed" would otherwise mark the stored answer an
   * error. Checks nothing when no model is loaded (the operation says so itself).
   */
  private assertTokensFitModel(conversationId: string): void {
    const vocab = this.s.slm?.vocabSize;
    if (vocab === undefined || !this.s.store.has(conversationId)) return;
    for (const m of this.s.store.get(conversationId).messages) {
      if (m.tokens?.some((t) => t.tokenId >= vocab))
        throw new Error(
          `This conversation holds token ids the loaded model does not have (its vocabulary has ${vocab}): it came from another model`,
        );
    }
  }

  cloudStatus(arg: OpArg<"cloudStatus"> = {}): Promise<OpResult<"cloudStatus">> {
    return this.connection.cloudStatus(arg);
  }

  setCloudSettings(arg: OpArg<"setCloudSettings">): Promise<OpResult<"setCloudSettings">> {
    return this.connection.setCloudSettings(arg);
  }

  cloudControl(arg: OpArg<"cloudControl"> = {}): Promise<OpResult<"cloudControl">> {
    return this.controls.cloudControl(arg);
  }

  updateCloudControl(arg: OpArg<"updateCloudControl">): Promise<OpResult<"updateCloudControl">> {
    return this.controls.updateCloudControl(arg);
  }

  cloudSeen(arg: OpArg<"cloudSeen">): Promise<OpResult<"cloudSeen">> {
    return this.controls.cloudSeen(arg);
  }

  setLocalOnly(arg: OpArg<"setLocalOnly">): Promise<OpResult<"setLocalOnly">> {
    return this.controls.setLocalOnly(arg);
  }

  forgetCloud(arg: OpArg<"forgetCloud">): Promise<OpResult<"forgetCloud">> {
    return this.controls.forgetCloud(arg);
  }
}

/**
 * Every operation of the table, bound to a service, for dispatch by name (IPC, WebSocket). Made from
 * BRIDGE_OPS: the service implements BridgeApi, so an operation is one method and nothing else to list.
 */
export function bindService(s: TandemService): BridgeApi {
  const bound = (op: BridgeOp) => (arg: never) => (s[op] as (a: never) => Promise<unknown>).call(s, arg);
  return Object.fromEntries(BRIDGE_OPS.map((op) => [op, bound(op)])) as BridgeApi;
}
