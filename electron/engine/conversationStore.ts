/**
 * Conversations on disk: one JSON file per conversation under `<dataDir>/conversations/`, with every
 * assistant token's origin and router data. Each save replaces the file atomically (atomicFile.ts), so a
 * crash mid-write never corrupts history. At start every file is loaded; one that does not parse (a
 * disk error, a hand edit) is moved aside as `<name>.corrupt-<time>` and reported, not silently dropped.
 */
import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { Conversation, ConversationMeta } from "../../shared/bridge.js";
import { TEMP_MARK, writeFileAtomic, type WriteHooks } from "./atomicFile.js";

export const STORE_VERSION = 1;

interface FileShape {
  version: number;
  conversation: Conversation;
}

export class ConversationStore {
  private readonly conversations = new Map<string, Conversation>();
  /** per-conversation write chain: saves of one file never interleave */
  private readonly writes = new Map<string, Promise<void>>();
  readonly notices: string[] = [];
  /** test seam, see WriteHooks */
  hooks: WriteHooks = {};

  private constructor(readonly dir: string) {}

  static async open(dataDir: string): Promise<ConversationStore> {
    const store = new ConversationStore(path.join(dataDir, "conversations"));
    await mkdir(store.dir, { recursive: true });
    await store.load();
    return store;
  }

  private async load(): Promise<void> {
    for (const name of await readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.includes(TEMP_MARK)) {
        // the leftover of a write interrupted before its rename: the real file is intact, drop it
        await unlink(file).catch(() => {});
        continue;
      }
      if (!name.endsWith(".json")) continue;
      try {
        const parsed = JSON.parse(await readFile(file, "utf8")) as FileShape;
        const c = parsed?.conversation;
        if (parsed?.version !== STORE_VERSION || !c || typeof c.id !== "string" || !Array.isArray(c.messages)) {
          throw new Error("not a Tandem conversation file");
        }
        this.conversations.set(c.id, c);
      } catch (err) {
        const aside = `${file}.corrupt-${Date.now()}`;
        await rename(file, aside).catch(() => {});
        this.notices.push(`A conversation file could not be read (${(err as Error).message}); it was moved aside to ${aside}.`);
      }
    }
  }

  list(): ConversationMeta[] {
    return [...this.conversations.values()].map(metaOf).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  get(id: string): Conversation {
    const c = this.conversations.get(id);
    if (!c) throw new Error(`No conversation ${id}`);
    return c;
  }

  has(id: string): boolean {
    return this.conversations.has(id);
  }

  async create(title = "New chat"): Promise<Conversation> {
    const now = Date.now();
    const c: Conversation = { id: randomUUID(), title, createdAt: now, updatedAt: now, messages: [] };
    this.conversations.set(c.id, c);
    await this.save(c.id);
    return c;
  }

  async rename(id: string, title: string): Promise<ConversationMeta> {
    const c = this.get(id);
    c.title = title.trim().slice(0, 200) || c.title;
    c.updatedAt = Date.now();
    await this.save(id);
    return metaOf(c);
  }

  async delete(id: string): Promise<boolean> {
    if (!this.conversations.delete(id)) return false;
    await this.chain(id, () => unlink(this.fileOf(id)).catch(() => {}));
    return true;
  }

  /** Persists the in-memory state of a conversation (callers mutate it through `get`). */
  save(id: string): Promise<void> {
    return this.chain(id, async () => {
      const c = this.conversations.get(id);
      if (!c) return; // deleted meanwhile
      const data: FileShape = { version: STORE_VERSION, conversation: c };
      await writeFileAtomic(this.fileOf(id), JSON.stringify(data), this.hooks);
    });
  }

  /** Waits for all pending writes (shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.writes.values()]);
  }

  private chain(id: string, job: () => Promise<void>): Promise<void> {
    const prev = this.writes.get(id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(job);
    this.writes.set(id, next);
    void next.finally(() => {
      if (this.writes.get(id) === next) this.writes.delete(id);
    }).catch(() => {});
    return next;
  }

  private fileOf(id: string): string {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new Error(`Invalid conversation id ${JSON.stringify(id)}`);
    return path.join(this.dir, `${id}.json`);
  }
}

export function metaOf(c: Conversation): ConversationMeta {
  return { id: c.id, title: c.title, createdAt: c.createdAt, updatedAt: c.updatedAt, messageCount: c.messages.length };
}
