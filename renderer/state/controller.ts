/**
 * Wires the bridge to the stores and holds the user's actions. No React: tested with a fake bridge.
 */
import type {
  Bridge,
  BridgeEvent,
  CatalogueItem,
  CloudSettings,
  ExportedConversation,
  ExportFormat,
  ImportResult,
  SearchHit,
  SettingsPatch,
  SettingsView,
} from "../../shared/bridge";
import type { Candidate } from "../../shared/events";
import { importParts } from "./importParts";
import type { Stores } from "./stores";
import { errorMessage } from "../../shared/errors.js";

export interface Controller {
  /** reads the snapshot (at start and after the host restarts) */
  sync(): Promise<void>;
  select(id: string): Promise<void>;
  newChat(): Promise<void>;
  /** true once the answer has started (the composer keeps the text otherwise) */
  send(text: string): Promise<boolean>;
  stop(): Promise<void>;
  regenerate(): Promise<void>;
  /** writes on where the last answer stopped at the token limit */
  continueAnswer(): Promise<void>;
  editAndResend(messageId: string, text: string): Promise<void>;
  /** ‹ › : makes version `version` (from 0) of that message of the open conversation the active one */
  selectVersion(messageId: string, version: number): Promise<void>;
  setTau(tau: number): Promise<void>;
  /** the open conversation's own system prompt; null: the app's default. Throws the engine's reason */
  setSystemPrompt(conversationId: string, systemPrompt: string | null): Promise<void>;
  rename(id: string, title: string): Promise<void>;
  remove(id: string): Promise<void>;
  setCloud(settings: CloudSettings): Promise<void>;
  /** validates, saves and applies; throws the engine's reason (the form shows it beside the field) */
  updateSettings(patch: SettingsPatch): Promise<void>;
  openLocalModel(path: string): Promise<void>;
  /** the desktop app's file dialog; resolves false when cancelled */
  chooseLocalModel(): Promise<boolean>;
  /** the downloadable SLMs (first run) */
  catalogue(): Promise<CatalogueItem[]>;
  /** starts (or resumes) a download; progress arrives in the session store's `models.download` */
  downloadModel(id: string): Promise<void>;
  cancelDownload(): Promise<void>;
  exportConversation(id: string, format: ExportFormat): Promise<{ filename: string; mime: string; content: string }>;
  /** every conversation as the app's JSON */
  exportAll(): Promise<ExportedConversation>;
  /** the conversations of an export file; a notice says how many (or why none) */
  importConversations(content: string): Promise<ImportResult | undefined>;
  /** conversations whose title or text contains the query */
  search(query: string): Promise<SearchHit[]>;
  /** the SLM's top candidates at one token, computed on demand (the pinned token) */
  candidates(ref: { messageId: string; index: number }): Promise<Candidate[]>;
  /** the open conversation's own sampling (null: back to the app's default); throws the engine's reason */
  setSampling(sampling: SamplingChoice | null): Promise<void>;
  /** the app's default sampling: new chats, and chats without their own */
  defaultSampling(): Promise<SamplingChoice>;
  setDefaultSampling(sampling: SamplingChoice): Promise<void>;
  dispose(): void;
}

/** notices about the local model not being ready, dropped once it is */
const STALE_ONCE_LOADED = /local model is not loaded|model is (still )?loading/i;

let counter = 0;
const newRequestId = () => `r${Date.now().toString(36)}-${(counter++).toString(36)}`;
type SamplingChoice = NonNullable<Parameters<Bridge["setSampling"]>[0]["sampling"]>;

export function createController(bridge: Bridge, stores: Stores, onError: (msg: string) => void = () => {}): Controller {
  const chat = () => stores.chat.getState();
  const dispatch = (a: Parameters<ReturnType<typeof chat>["dispatch"]>[0]) => chat().dispatch(a);

  const onEvent = (e: BridgeEvent) => {
    switch (e.type) {
      case "tau":
        stores.session.setState({ tau: e.tau });
        break;
      case "models":
        // a notice that the model is missing or loading is stale once it is loaded
        stores.session.setState((s) => ({
          models: e.models,
          notices: e.models.slm.loaded ? s.notices.filter((n) => !STALE_ONCE_LOADED.test(n)) : s.notices,
        }));
        break;
      case "cloud":
        stores.session.setState({ cloud: e.cloud });
        break;
      case "stats":
        stores.session.setState({ stats: e.stats });
        break;
      case "settings":
        applySettings(e.settings);
        break;
      case "notice":
        stores.session.setState((s) => ({ notices: [...s.notices, e.message] }));
        break;
      default:
        dispatch({ type: "bridge", event: e });
    }
  };
  const unsubscribe = bridge.subscribe(onEvent);

  const guard = async <T>(p: Promise<T>): Promise<T | undefined> => {
    try {
      return await p;
    } catch (err) {
      onError(errorMessage(err));
      return undefined;
    }
  };

  /** the settings in the session store; the saved theme is the display's */
  const applySettings = (settings: SettingsView) => {
    stores.session.setState({ settings });
    if (stores.ui.getState().theme !== settings.theme) stores.ui.setState({ theme: settings.theme });
  };

  const load = async (id: string) => {
    const c = await bridge.getConversation({ id });
    dispatch({ type: "loaded", conversation: c });
  };

  /** A file too large for one call goes in parts, every part checked before any is imported (importParts.ts). */
  const importInParts = async (content: string): Promise<ImportResult> => {
    const parts = importParts(content);
    if (parts.length === 1) return bridge.importConversations({ content });
    for (const part of parts) await bridge.importConversations({ content: part, dryRun: true });
    const all: ImportResult = { imported: [], renamed: 0 };
    for (const part of parts) {
      const r = await bridge.importConversations({ content: part });
      all.imported.push(...r.imported);
      all.renamed += r.renamed;
    }
    return all;
  };

  const ctl: Controller = {
    async sync() {
      const snap = await bridge.snapshot({});
      stores.session.setState({
        connected: true,
        tau: snap.tau,
        models: snap.models,
        cloud: snap.cloud,
        stats: snap.stats,
        notices: snap.notices,
      });
      dispatch({ type: "conversations", conversations: snap.conversations });
      dispatch({ type: "streaming", streaming: snap.activeRequest });
      const settings = await guard(bridge.getSettings({}));
      if (settings) applySettings(settings);
      const active = chat().activeId ?? snap.activeRequest?.conversationId ?? snap.conversations[0]?.id ?? null;
      if (active) {
        await load(active);
        dispatch({ type: "select", id: active });
      }
    },
    async select(id) {
      await guard(load(id));
      dispatch({ type: "select", id });
      stores.ui.setState({ hovered: null, pinned: null, editing: null });
    },
    async newChat() {
      // an empty chat is reused (the open one first): New chat never piles up empty conversations
      const empty = chat().conversations.filter((c) => c.messageCount === 0);
      const reuse = empty.find((c) => c.id === chat().activeId) ?? empty[0];
      if (reuse) await ctl.select(reuse.id);
      else {
        const c = await guard(bridge.createConversation({}));
        if (!c) return;
        dispatch({ type: "loaded", conversation: c });
        dispatch({ type: "select", id: c.id });
      }
      stores.ui.setState((s) => ({ composerFocus: s.composerFocus + 1 }));
    },
    async send(text) {
      if (!text.trim() || chat().streaming) return false;
      let id = chat().activeId;
      if (!id) {
        await ctl.newChat();
        id = chat().activeId;
        if (!id) return false;
      }
      return (await guard(bridge.send({ requestId: newRequestId(), conversationId: id, text }))) !== undefined;
    },
    async stop() {
      const s = chat().streaming;
      if (s) await guard(bridge.stop({ requestId: s.requestId }));
    },
    async regenerate() {
      const id = chat().activeId;
      if (id && !chat().streaming) await guard(bridge.regenerate({ requestId: newRequestId(), conversationId: id }));
    },
    async continueAnswer() {
      const id = chat().activeId;
      if (id && !chat().streaming) await guard(bridge.continueAnswer({ requestId: newRequestId(), conversationId: id }));
    },
    async editAndResend(messageId, text) {
      const id = chat().activeId;
      stores.ui.setState({ editing: null });
      if (id && !chat().streaming) await guard(bridge.editAndResend({ requestId: newRequestId(), conversationId: id, messageId, text }));
    },
    async selectVersion(messageId, version) {
      const id = chat().activeId;
      if (!id || chat().streaming) return;
      const c = await guard(bridge.selectVersion({ conversationId: id, messageId, version }));
      if (c) dispatch({ type: "loaded", conversation: c });
    },
    async setSystemPrompt(conversationId, systemPrompt) {
      dispatch({ type: "loaded", conversation: await bridge.setSystemPrompt({ conversationId, systemPrompt }) });
    },
    async setTau(tau) {
      stores.session.setState({ tau }); // the slider follows the hand at once; the engine confirms
      await guard(bridge.setTau({ tau }));
    },
    async rename(id, title) {
      await guard(bridge.renameConversation({ id, title }));
      if (chat().loaded[id]) await guard(load(id));
    },
    async remove(id) {
      const r = await guard(bridge.deleteConversation({ id }));
      if (r?.deleted) dispatch({ type: "removed", id });
    },
    async setCloud(settings) {
      const cloud = await bridge.setCloudSettings(settings); // errors go to the caller's form
      stores.session.setState({ cloud });
      const view = await guard(bridge.getSettings({}));
      if (view) applySettings(view);
    },
    async updateSettings(patch) {
      applySettings(await bridge.updateSettings(patch)); // errors go to the caller's form
    },
    async openLocalModel(path) {
      const models = await bridge.openLocalModel({ path });
      stores.session.setState({ models });
      if (models.slm.error) throw new Error(models.slm.error);
    },
    async chooseLocalModel() {
      const models = await bridge.chooseLocalModel({});
      if (!models) return false;
      stores.session.setState({ models });
      if (models.slm.error) throw new Error(models.slm.error);
      return true;
    },
    async catalogue() {
      return bridge.catalogue({});
    },
    async downloadModel(id) {
      stores.session.setState({ models: await bridge.downloadModel({ id }) });
    },
    async cancelDownload() {
      stores.session.setState({ models: await bridge.cancelDownload({}) });
    },
    async exportConversation(id, format) {
      return bridge.exportConversation({ id, format });
    },
    async exportAll() {
      return bridge.exportAll({});
    },
    async importConversations(content) {
      const r = await guard(importInParts(content));
      if (!r) return undefined;
      const n = r.imported.length;
      const renamed = r.renamed ? ` (${r.renamed} already here, imported as new conversation${r.renamed === 1 ? "" : "s"})` : "";
      stores.session.setState((s) => ({ notices: [...s.notices, `Imported ${n} conversation${n === 1 ? "" : "s"}${renamed}.`] }));
      return r;
    },
    async search(query) {
      return (await guard(bridge.searchConversations({ query }))) ?? [];
    },
    async candidates({ messageId, index }) {
      const conversationId = chat().activeId;
      if (!conversationId) return [];
      return (await bridge.candidates({ conversationId, messageId, index })).candidates;
    },
    async setSampling(sampling) {
      const conversationId = chat().activeId;
      if (!conversationId) throw new Error("No conversation is open");
      dispatch({ type: "loaded", conversation: await bridge.setSampling({ conversationId, sampling }) });
    },
    async defaultSampling() {
      return (await bridge.getSettings({})).sampling;
    },
    async setDefaultSampling(sampling) {
      await bridge.updateSettings({ sampling });
    },
    dispose() {
      unsubscribe();
    },
  };
  return ctl;
}
