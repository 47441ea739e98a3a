/**
 * The conversation operations: list, open, create, rename, delete, export, import, search, switch versions,
 * and each conversation's system prompt and sampling (conversationStore.ts keeps them).
 * A concern of the engine service (service.ts), over its shared state (engineState.ts).
 */
import type { Conversation, OpArg, OpResult } from "../../shared/bridge.js";
import { MAX_IMPORT_CHARS } from "../../shared/bridge.js";
import { metaOf } from "./conversationStore.js";
import { exportConversation } from "./exportConversation.js";
import { selectVersion } from "./conversationVersions.js";
import { exportAll, readImport } from "./conversationArchive.js";
import { searchConversations } from "./conversationSearch.js";
import { MAX_SYSTEM_PROMPT_CHARS } from "./settings.js";
import type { EngineState } from "./engineState.js";
import { checkSampling } from "./settingsOps.js";

export class ConversationOps {
  constructor(private readonly s: EngineState) {}

  async listConversations(_arg: OpArg<"listConversations"> = {}): Promise<OpResult<"listConversations">> {
    return this.s.store.list();
  }

  async getConversation({ id }: OpArg<"getConversation">): Promise<Conversation> {
    return this.s.store.get(String(id));
  }

  async createConversation({ title }: OpArg<"createConversation">): Promise<Conversation> {
    const c = await this.s.store.create(typeof title === "string" ? title : undefined);
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
    if (this.s.active?.handle.conversationId === id) await this.s.stopActive();
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
}
