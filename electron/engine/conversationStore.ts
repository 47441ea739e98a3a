/**
 * Conversations on disk, under `<dataDir>/conversations/`:
 *
 *   <id>.json      the conversation (every assistant token with its origin and router data), replaced
 *                  atomically (atomicFile.ts) at the start and the end of an answer and on every edit;
 *   <id>.journal   the tokens of the answer being written since the last snapshot, one JSON line per
 *                  token, appended as each token is made (appendToken); deleted by the next snapshot.
 *
 * Why a journal: rewriting the whole file for every token costs O(conversation) per token, while
 * snapshotting only at the end of an answer would lose the whole answer in a crash. With the journal a
 * crash of the process (SIGKILL, a native crash, the power button held after a hang) loses at most the
 * token being written: a token counts as *committed* once `appendToken` has resolved, i.e. its line was
 * handed to the OS with write(2) — from then on it survives the death of this process. The service
 * shows a token only after that. Surviving an OS crash or power cut needs the data on the disk itself:
 * journal lines are fdatasync'ed at most JOURNAL_SYNC_MS apart while tokens keep coming, and every
 * snapshot is fsync'ed, so such a crash loses at most the last JOURNAL_SYNC_MS of the answer being
 * written (syncing every token would cost a disk flush per token).
 *
 * At start every file is loaded and its journal replayed: a torn last line (the token being written)
 * is dropped, lines already in the snapshot are skipped (by token index, so a crash between a snapshot
 * and the journal's removal duplicates nothing), and the result is snapshotted again. An answer that
 * was streaming when the process died is kept as "stopped". A file that does not parse or is not a
 * conversation (a disk error, a hand edit) is moved aside as `<name>.corrupt-<time>` with a notice that
 * says where, never silently dropped; the other conversations load.
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Conversation, ConversationMeta } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { TEMP_MARK, writeFileAtomic, type WriteHooks } from "./atomicFile.js";
import { CONVERSATION_ID, conversationTitle, journalLineSchema, parseConversation } from "./conversationSchema.js";
import { errorMessage } from "../../shared/errors.js";

/**
 * The file format's version. 2 added versions and branches (`StoredMessage.versions`); a version-1 file
 * (before them) is a version-2 conversation with one version everywhere and loads unchanged
 * (`migrateFile`), to be written as version 2 by its next save.
 */
export const STORE_VERSION = 2;
const READABLE_VERSIONS = new Set([1, 2]);
export const JOURNAL_EXT = ".journal";
/** Longest time journal lines wait for fdatasync while an answer streams (power-loss bound). */
export const JOURNAL_SYNC_MS = 1000;

interface FileShape {
  version: number;
  conversation: Conversation;
}

/** One journal line: token `t` of assistant message `m`. */
interface JournalLine {
  m: string;
  t: TokenEvent;
}

interface OpenJournal {
  fh: FileHandle;
  syncedAt: number;
  /** bytes of complete lines: a failed write is cut back to it */
  size: number;
}

export class ConversationStore {
  private readonly conversations = new Map<string, Conversation>();
  /** per-conversation write chain: saves and appends of one conversation never interleave */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly journals = new Map<string, OpenJournal>();
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
    const names = await readdir(this.dir);
    const journals = new Set(names.filter((n) => n.endsWith(JOURNAL_EXT)));
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (name.includes(TEMP_MARK)) {
        // the leftover of a write interrupted before its rename: the real file is intact, drop it
        await unlink(file).catch(() => {});
        continue;
      }
      if (!name.endsWith(".json")) continue;
      const journalName = name.slice(0, -".json".length) + JOURNAL_EXT;
      const journal = journals.delete(journalName) ? path.join(this.dir, journalName) : null;
      // one odd file must never stop the others from loading (nor the app from starting)
      try {
        await this.loadOne(name, file, journal);
      } catch (err) {
        this.notices.push(`The conversation file ${name} could not be loaded (${errorMessage(err)}); it was left as it is.`);
      }
    }
    // journals without a conversation: left by a delete that died between the two unlinks
    for (const name of journals) await rm(path.join(this.dir, name), { recursive: true, force: true }).catch(() => {});
  }

  private async loadOne(name: string, file: string, journal: string | null): Promise<void> {
    let c: Conversation;
    try {
      c = parseConversationFile(await readFile(file, "utf8"));
      if (`${c.id}.json` !== name) throw new Error(`it holds conversation ${JSON.stringify(c.id)}, not ${name}`);
    } catch (err) {
      const aside = await this.setAside(file);
      if (journal) await this.setAside(journal);
      this.notices.push(
        `The conversation file ${name} could not be read (${errorMessage(err)}); it was moved aside to ${aside} ` +
          `and the other conversations were loaded.`,
      );
      return;
    }
    let changed = journal ? await this.replayJournal(c, journal) : false;
    for (const m of c.messages) {
      // an answer still streaming when the process died: keep what was written, as a stopped answer
      if (m.role === "assistant" && !m.status) {
        m.status = "stopped";
        changed = true;
      }
    }
    this.conversations.set(c.id, c);
    if (!changed && !journal) return;
    // fold the journal into the snapshot: the next answer starts a fresh journal (a torn line at its
    // end would otherwise sit in the middle of the next one). A failed save (a full disk) keeps the
    // journal, which the next successful save or start folds in.
    await this.save(c.id).catch((err: Error) =>
      this.notices.push(`The recovered answer of "${c.title}" could not be saved yet (${err.message}); it is kept in its journal.`),
    );
  }

  /**
   * Applies a journal's complete lines to `c`; returns whether anything changed. A damaged line (bytes
   * from elsewhere, a lost newline) is skipped and the lines after it still count: tokens that follow a
   * lost one are kept after the ones before it. A damaged journal is moved aside, not deleted.
   */
  private async replayJournal(c: Conversation, file: string): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      const aside = await this.setAside(file);
      this.notices.push(
        `The journal of conversation "${c.title}" could not be read (${errorMessage(err)}); it was moved aside to ${aside}.`,
      );
      return false;
    }
    const lines = text.split("\n");
    // the last piece is "" after a complete line, else a line cut short by the crash: the in-flight token
    lines.pop();
    const damaged: number[] = [];
    /** per answer, the journal index of the last token applied (the snapshot's count before any) */
    const lastIndex = new Map<string, number>();
    let lost = 0;
    let changed = false;
    for (let i = 0; i < lines.length; i++) {
      const line = parseJournalLine(lines[i]);
      if (!line) {
        damaged.push(i + 1);
        continue;
      }
      const msg = c.messages.find((m) => m.id === line.m && m.role === "assistant");
      if (!msg) continue; // the answer was replaced since (regenerate, edit): its tokens are gone on purpose
      const tokens = (msg.tokens ??= []);
      const prev = lastIndex.get(msg.id);
      const expected = prev === undefined ? tokens.length : prev + 1;
      if (line.t.index < expected) continue; // already in the snapshot
      lost += line.t.index - expected;
      lastIndex.set(msg.id, line.t.index);
      // positions stay contiguous: a token after a lost one takes the next free index
      tokens.push({ ...line.t, index: tokens.length });
      msg.content += line.t.text;
      changed = true;
    }
    if (damaged.length || lost) {
      const aside = await this.setAside(file);
      this.notices.push(
        `The journal of conversation "${c.title}" is damaged` +
          (damaged.length
            ? ` at line${damaged.length === 1 ? "" : "s"} ${damaged.slice(0, 5).join(", ")}${damaged.length > 5 ? ", …" : ""}`
            : "") +
          `${lost ? ` (${lost} token${lost === 1 ? "" : "s"} missing)` : ""}; ` +
          `the intact tokens before and after the damage were recovered and the journal was kept aside as ${aside}.`,
      );
    }
    return changed;
  }

  private async setAside(file: string): Promise<string> {
    const aside = `${file}.corrupt-${Date.now()}`;
    await rename(file, aside).catch(() => {});
    return aside;
  }

  list(): ConversationMeta[] {
    return [...this.conversations.values()].map(metaOf).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  /** Every conversation, newest first. */
  all(): Conversation[] {
    return [...this.conversations.values()].sort((a, b) => b.updatedAt - a.updatedAt);
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
    const c: Conversation = {
      id: randomUUID(),
      title: conversationTitle(title) || "New chat",
      createdAt: now,
      updatedAt: now,
      messages: [],
    };
    this.conversations.set(c.id, c);
    try {
      await this.save(c.id);
    } catch (err) {
      this.conversations.delete(c.id); // not on disk: it must not appear until it can be saved
      throw err;
    }
    return c;
  }

  /**
   * Adds conversations made elsewhere (an import, checked and given free ids by the caller), each saved.
   * All or none: if one cannot be saved, those already written are removed again.
   */
  async addAll(list: readonly Conversation[]): Promise<void> {
    const clash = list.find((c) => this.conversations.has(c.id));
    if (clash) throw new Error(`A conversation ${clash.id} exists already`);
    for (const c of list) this.conversations.set(c.id, c);
    try {
      for (const c of list) await this.save(c.id);
    } catch (err) {
      for (const c of list) await this.delete(c.id);
      throw err;
    }
  }

  async rename(id: string, title: string): Promise<ConversationMeta> {
    const c = this.get(id);
    const before = { title: c.title, updatedAt: c.updatedAt };
    c.title = conversationTitle(title) || c.title;
    c.updatedAt = Date.now();
    try {
      await this.save(id);
    } catch (err) {
      Object.assign(c, before); // the disk still has the old title: so does the app
      throw err;
    }
    return metaOf(c);
  }

  async delete(id: string): Promise<boolean> {
    if (!this.conversations.delete(id)) return false;
    await this.chain(id, async () => {
      await unlink(this.fileOf(id)).catch(() => {});
      await this.dropJournal(id);
    });
    return true;
  }

  /**
   * Persists the in-memory state of a conversation (callers mutate it through `get`) as a new snapshot,
   * then removes the journal it supersedes.
   */
  save(id: string): Promise<void> {
    // every title is written through here (create, rename, an answer's first words, an import): one line, bounded
    const conv = this.conversations.get(id);
    if (conv) conv.title = conversationTitle(conv.title) || "New chat";
    return this.chain(id, async () => {
      const c = this.conversations.get(id);
      if (!c) return; // deleted meanwhile
      const data: FileShape = { version: STORE_VERSION, conversation: c };
      await writeFileAtomic(this.fileOf(id), JSON.stringify(data), this.hooks);
      // a crash right here leaves journal lines the snapshot already holds: replay skips them by index
      await this.dropJournal(id);
    });
  }

  /**
   * Records one token of the answer `messageId` as it is made (the caller has already appended it to
   * the message in memory). Resolves once the line is with the OS: the token is then committed.
   */
  appendToken(id: string, messageId: string, token: TokenEvent): Promise<void> {
    const line = Buffer.from(JSON.stringify({ m: messageId, t: token } satisfies JournalLine) + "\n", "utf8");
    return this.chain(id, async () => {
      if (!this.conversations.has(id)) return; // deleted meanwhile
      let j = this.journals.get(id);
      if (!j) {
        const fh = await open(this.journalOf(id), "a", 0o600);
        j = { fh, syncedAt: Date.now(), size: (await fh.stat().catch(() => ({ size: 0 }))).size };
        this.journals.set(id, j);
      }
      // one write(2) per line: positional writes loop until the whole line is out (a short write is
      // possible in principle); a kill in between leaves a torn last line, which the replay drops
      let done = 0;
      try {
        while (done < line.length) done += (await j.fh.write(line, done, line.length - done)).bytesWritten;
      } catch (err) {
        // a full disk can take part of the line: cut it off, or the next line would follow a torn one
        await j.fh.truncate(j.size).catch(() => {});
        throw err;
      }
      j.size += line.length;
      if (Date.now() - j.syncedAt >= JOURNAL_SYNC_MS) {
        await j.fh.datasync();
        j.syncedAt = Date.now();
      }
    });
  }

  /** Waits for all pending writes and closes open journals (shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.writes.values()].map((p) => p.catch(() => {})));
    for (const [id, j] of [...this.journals]) {
      this.journals.delete(id);
      await j.fh.datasync().catch(() => {});
      await j.fh.close().catch(() => {});
    }
  }

  private async dropJournal(id: string): Promise<void> {
    const j = this.journals.get(id);
    this.journals.delete(id);
    await j?.fh.close().catch(() => {});
    await unlink(this.journalOf(id)).catch(() => {}); // usually absent: no answer since the last snapshot
  }

  private chain(id: string, job: () => Promise<void>): Promise<void> {
    const prev = this.writes.get(id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(job);
    this.writes.set(id, next);
    void next
      .finally(() => {
        if (this.writes.get(id) === next) this.writes.delete(id);
      })
      .catch(() => {});
    return next;
  }

  private fileOf(id: string): string {
    return path.join(this.dir, `${checkId(id)}.json`);
  }

  private journalOf(id: string): string {
    return path.join(this.dir, `${checkId(id)}${JOURNAL_EXT}`);
  }
}

function checkId(id: string): string {
  if (!CONVERSATION_ID.test(id)) throw new Error(`Invalid conversation id ${JSON.stringify(id)}`);
  return id;
}

/** Parses and checks a conversation file (any readable version); throws a short, readable reason for anything else. */
export function parseConversationFile(text: string): Conversation {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(text.trim() === "" ? "the file is empty" : `not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  const o = parsed as Partial<FileShape> | null;
  if (typeof o !== "object" || o === null || !READABLE_VERSIONS.has(o.version as number) || typeof o.conversation !== "object") {
    throw new Error("not a Tandem conversation file");
  }
  try {
    return parseConversation(migrateFile(o as FileShape).conversation);
  } catch (err) {
    throw new Error(`not a valid conversation: ${errorMessage(err)}`, { cause: err });
  }
}

/** A file of an earlier version as the current version. 1 → 2: nothing to change (no message has versions yet). */
export function migrateFile(file: FileShape): FileShape {
  return file.version === 1 ? { version: 2, conversation: file.conversation } : file;
}

/** One journal line, or null when it is damaged (not JSON, not a token record). */
function parseJournalLine(text: string): JournalLine | null {
  try {
    const r = journalLineSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export function metaOf(c: Conversation): ConversationMeta {
  return { id: c.id, title: c.title, createdAt: c.createdAt, updatedAt: c.updatedAt, messageCount: c.messages.length };
}
