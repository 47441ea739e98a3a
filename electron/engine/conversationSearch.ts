/**
 * Search across conversations: a conversation matches when its title or the text of any of its
 * messages — in every version and branch, not only the active path — contains the query, in any case
 * (a run of spaces in the query counts as one). Newest conversations first.
 */
import type { Conversation, SearchHit } from "../../shared/bridge.js";
import { allMessages } from "./conversationSchema.js";

export const MAX_SEARCH_HITS = 50;
const AROUND = 40;

export function searchConversations(conversations: Iterable<Conversation>, query: string): SearchHit[] {
  const q = query.trim().replace(/\s+/g, " ").toLowerCase();
  if (!q) return [];
  const hits: SearchHit[] = [];
  for (const c of conversations) {
    const hit = searchOne(c, q);
    if (hit) hits.push(hit);
  }
  return hits.sort((a, b) => b.updatedAt - a.updatedAt).slice(0, MAX_SEARCH_HITS);
}

function searchOne(c: Conversation, q: string): SearchHit | null {
  let first: { id: string; snippet: string } | null = null;
  let matches = 0;
  for (const m of allMessages(c.messages)) {
    const at = m.content.toLowerCase().indexOf(q);
    if (at < 0) continue;
    matches++;
    first ??= { id: m.id, snippet: snippetAt(m.content, at, q.length) };
  }
  const inTitle = c.title.toLowerCase().includes(q);
  if (!first && !inTitle) return null;
  return {
    conversationId: c.id,
    title: c.title,
    updatedAt: c.updatedAt,
    messageId: first?.id ?? null,
    snippet: first?.snippet ?? c.title,
    matches,
  };
}

/** The match with a few words either side, on one line. */
function snippetAt(text: string, at: number, length: number): string {
  const from = Math.max(0, at - AROUND);
  const to = Math.min(text.length, at + length + AROUND);
  const body = text.slice(from, to).replace(/\s+/g, " ").trim();
  return `${from > 0 ? "…" : ""}${body}${to < text.length ? "…" : ""}`;
}
