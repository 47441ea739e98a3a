/**
 * Export all and import: the app's own JSON, every conversation whole (every version and branch,
 * every token with its origin and router data).
 *
 * An import is read and checked entirely before anything changes (`readImport`): one conversation
 * that does not pass the schema refuses the whole file with a reason naming it, so nothing is half
 * imported and nothing is silently left out. An id already taken (by a conversation here, or twice in
 * the file) is replaced by a new one: an import never overwrites a conversation.
 */
import { randomUUID } from "node:crypto";
import type { Conversation, ExportedConversation } from "../../shared/bridge.js";
import { errorMessage } from "../../shared/errors.js";
import { parseConversation } from "./conversationSchema.js";

export const ARCHIVE_FORMAT = "tandem-conversations";
/** What exportConversation's JSON is (one conversation): imported too. */
export const SINGLE_FORMAT = "tandem-conversation";
export const ARCHIVE_VERSION = 2;
/** Versions of both formats an import reads (1: before versions and branches, a subset of 2). */
const READABLE = new Set([1, 2]);
/** Most conversations one import takes. */
export const MAX_IMPORT_CONVERSATIONS = 100_000;

export function exportAll(conversations: readonly Conversation[], now = new Date()): ExportedConversation {
  const day = now.toISOString().slice(0, 10);
  return {
    filename: `tandem-conversations-${day}.json`,
    mime: "application/json",
    content: JSON.stringify({ format: ARCHIVE_FORMAT, version: ARCHIVE_VERSION, conversations }),
  };
}

export interface ImportPlan {
  conversations: Conversation[];
  /** how many were given a new id because theirs was taken */
  renamed: number;
}

/** The conversations of an export (all, or one), checked whole; throws a reason naming what is wrong. */
export function readImport(text: string, taken: (id: string) => boolean): ImportPlan {
  const list = archiveEntries(text);
  const conversations: Conversation[] = [];
  for (let i = 0; i < list.length; i++) {
    const raw = list[i] as { title?: unknown } | null;
    try {
      conversations.push(parseConversation(raw));
    } catch (err) {
      const title = typeof raw?.title === "string" ? ` (“${raw.title.slice(0, 60)}”)` : "";
      throw new Error(`Nothing was imported: conversation ${i + 1}${title} is not valid: ${errorMessage(err)}`, { cause: err });
    }
  }
  const used = new Set<string>();
  let renamed = 0;
  for (const c of conversations) {
    if (taken(c.id) || used.has(c.id)) {
      c.id = randomUUID();
      renamed++;
    }
    used.add(c.id);
    settleStreaming(c);
  }
  return { conversations, renamed };
}

function archiveEntries(text: string): unknown[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`Nothing was imported: the file is not JSON (${errorMessage(err)})`, { cause: err });
  }
  const o = (typeof v === "object" && v !== null ? v : {}) as {
    format?: unknown;
    version?: unknown;
    conversations?: unknown;
    conversation?: unknown;
  };
  if (!READABLE.has(o.version as number)) throw new Error("Nothing was imported: not a Tandem export (format or version unknown)");
  if (o.format === SINGLE_FORMAT) return [o.conversation];
  if (o.format !== ARCHIVE_FORMAT || !Array.isArray(o.conversations)) {
    throw new Error("Nothing was imported: not a Tandem export (format or version unknown)");
  }
  if (o.conversations.length > MAX_IMPORT_CONVERSATIONS) {
    throw new Error(`Nothing was imported: ${o.conversations.length} conversations (at most ${MAX_IMPORT_CONVERSATIONS} at once)`);
  }
  return o.conversations;
}

/** An answer exported while it streamed has no status: it is kept as stopped, as a restart keeps it. */
function settleStreaming(c: Conversation): void {
  for (const m of c.messages) if (m.role === "assistant" && !m.status) m.status = "stopped";
}
