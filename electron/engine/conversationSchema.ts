/**
 * The one schema every conversation file and journal line is checked against on load.
 *
 * Why a schema and not a few typeof checks: a field of the wrong type (`"tokensPerSecond": "fast"`) that
 * passed the old checks reached the UI and broke it on every start. Unknown fields are dropped (zod's
 * default), which also drops whatever is nested inside them: an extra field nested 200,000 deep made the
 * next snapshot's JSON.stringify overflow the stack and the store refuse to open.
 */
import { z } from "zod";
import type { Conversation, StoredMessage } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { samplingConfigSchema, samplingSettingsSchema } from "../../shared/sampling.js";
import { MAX_SYSTEM_PROMPT_CHARS } from "./settings.js";

/** Conversation ids are file names: letters, digits and dashes only (no dot, no space, no separator). */
export const CONVERSATION_ID = /^[A-Za-z0-9-]{1,64}$/;

/** Longest title, in characters (code points): a list row, a file name, a Markdown heading. */
export const MAX_TITLE_CHARS = 200;

// C0/C1 controls (line breaks, ESC, NUL), and the bidirectional overrides and isolates that reorder the text around them
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const TITLE_UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+/g;

/**
 * A title as the app keeps it: one line of at most MAX_TITLE_CHARS, no control characters (a title
 * is written into notices printed on a terminal, Markdown headings and file names). Empty when
 * nothing printable is left: the caller chooses the fallback.
 */
export function conversationTitle(raw: string): string {
  const line = raw.replace(TITLE_UNSAFE, " ").replace(/\s+/g, " ").trim();
  if (line.length <= MAX_TITLE_CHARS) return line;
  return Array.from(line).slice(0, MAX_TITLE_CHARS).join("").trimEnd(); // by code point: no half of a pair
}

const int = z.number().int();
/** token ids index a vocabulary: never negative (the model checks the upper end, it alone knows its size) */
const tokenId = int.min(0);
const candidate = z.object({ tokenId, prob: z.number(), text: z.string().optional() });
const cloudVerdict = z.object({
  tokenId,
  logprob: z.number().optional(),
  top: z.array(z.object({ tokenId, logprob: z.number() })),
  fromDraft: z.boolean().optional(),
});

export const tokenEventSchema = z.object({
  index: int.min(0),
  tokenId,
  text: z.string(),
  origin: z.enum(["local", "cloud", "fallback"]),
  confidence: z.number(),
  tau: z.number(),
  cloudLatencyMs: z.number().nullable(),
  slmTokenId: tokenId,
  slmProb: z.number().optional(),
  slmTop: z.array(candidate).optional(),
  cloud: cloudVerdict.optional(),
  fallbackReason: z.string().optional(),
});

const summary = z.object({
  tokens: int,
  cloudTokens: int,
  fallbackTokens: int,
  cloudCalls: int,
  bytesUp: z.number(),
  bytesDown: z.number(),
  tokensPerSecond: z.number(),
  text: z.string(),
  stopReason: z.enum(["eog", "stop-string", "max-tokens", "abort", "context-full"]),
  router: z.string(),
  elapsedMs: z.number(),
  sampling: samplingSettingsSchema.optional(),
});

const contextUsage = z.object({
  used: int,
  window: int,
  reserved: int,
  droppedMessages: int,
  slid: z.boolean(),
  truncated: z.boolean(),
});

/** A message of the conversation's active path, or of a version kept beside it (conversationVersions.ts). */
export const messageSchema = z.object({
  id: z.string().min(1).max(200),
  role: z.enum(["user", "assistant"]),
  content: z.string(),
  createdAt: z.number(),
  tokens: z.array(tokenEventSchema).optional(),
  summary: summary.optional(),
  sampling: samplingSettingsSchema.optional(),
  status: z.enum(["complete", "stopped", "error"]).optional(),
  error: z.string().optional(),
  context: contextUsage.optional(),
  // recursive: a version's continuation holds its own forks (depth bounded before zod sees it: MAX_FORK_DEPTH)
  get versions(): z.ZodOptional<z.ZodArray<z.ZodArray<typeof messageSchema>>> {
    return z.array(z.array(messageSchema).min(1)).optional();
  },
  version: int.min(0).optional(),
});

export const conversationSchema = z.object({
  id: z.string().regex(CONVERSATION_ID, "not a valid conversation id (letters, digits and dashes only)"),
  // the same bounds as the operations that set them: a file or an import cannot bring in what a page could not
  title: z.string().transform(conversationTitle),
  createdAt: z.number(),
  updatedAt: z.number(),
  messages: z.array(messageSchema),
  systemPrompt: z.string().max(MAX_SYSTEM_PROMPT_CHARS).optional(),
  sampling: samplingConfigSchema.optional(),
});

export const journalLineSchema = z.object({ m: z.string(), t: tokenEventSchema });

// the schema and the app's types must describe the same thing: a field added to one fails the type check
// (keys compared too: an optional field missing from the schema would otherwise pass, and be dropped on load)
type Same<A, B> = [A] extends [B]
  ? [B] extends [A]
    ? [keyof A] extends [keyof B]
      ? [keyof B] extends [keyof A]
        ? true
        : false
      : false
    : false
  : false;
const sameConversation: Same<z.infer<typeof conversationSchema>, Conversation> = true;
const sameToken: Same<z.infer<typeof tokenEventSchema>, TokenEvent> = true;
const sameMessage: Same<z.infer<typeof messageSchema>, StoredMessage> = true;
void [sameConversation, sameToken, sameMessage];

/** The first problem zod found, as a short phrase naming where it is ("messages[2].summary.tokensPerSecond: …"). */
export function describeIssue(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return "invalid";
  const [top, n, ...rest] = issue.path;
  if (top === "messages" && typeof n === "number") {
    return `message ${n + 1} is malformed (${rest.map(String).join(".") || "message"}: ${issue.message})`;
  }
  const where = issue.path
    .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
    .join("")
    .replace(/^\./, "");
  return where ? `${where}: ${issue.message}` : issue.message;
}

/** Forks nested inside forks, at most (a hostile file nested deeper would overflow the stack of the checks). */
export const MAX_FORK_DEPTH = 500;

/**
 * A conversation checked whole: the nesting of its versions bounded (walked without recursion, before
 * zod recurses), its fields by the schema, then what the schema cannot say — every message id unique
 * across all versions (the journal and the UI address messages by id) and each `version` within its
 * `versions`. Throws a short reason.
 */
export function parseConversation(value: unknown): Conversation {
  const depth = forkDepth(value);
  if (depth > MAX_FORK_DEPTH) throw new Error(`versions nested ${depth} deep (at most ${MAX_FORK_DEPTH})`);
  const r = conversationSchema.safeParse(value);
  if (!r.success) throw new Error(describeIssue(r.error));
  const problem = treeProblem(r.data);
  if (problem) throw new Error(problem);
  return r.data;
}

function forkDepth(value: unknown): number {
  const root = (value as { messages?: unknown } | null)?.messages;
  let deepest = 0;
  const todo: [unknown, number][] = [[root, 0]];
  while (todo.length) {
    const [list, depth] = todo.pop()!;
    deepest = Math.max(deepest, depth);
    if (!Array.isArray(list) || depth > MAX_FORK_DEPTH) continue;
    for (const m of list) {
      const versions = (m as { versions?: unknown } | null)?.versions;
      if (Array.isArray(versions)) for (const tail of versions) todo.push([tail, depth + 1]);
    }
  }
  return deepest;
}

/** Every message of a conversation, on the active path and in every version kept beside it. */
export function* allMessages(messages: readonly StoredMessage[]): Generator<StoredMessage> {
  const todo: (readonly StoredMessage[])[] = [messages];
  while (todo.length) {
    for (const m of todo.pop()!) {
      yield m;
      if (m.versions) todo.push(...m.versions);
    }
  }
}

function treeProblem(c: Conversation): string | null {
  const seen = new Set<string>();
  for (const m of allMessages(c.messages)) {
    if (seen.has(m.id)) return `message id ${JSON.stringify(m.id)} is used twice`;
    seen.add(m.id);
    if (m.role === "user" && (m.tokens || m.summary)) return `message ${JSON.stringify(m.id)} is the user's but carries an answer's tokens`;
    const n = m.versions?.length ?? 0;
    if ((m.version ?? 0) > n) return `message ${JSON.stringify(m.id)} is version ${m.version! + 1} of only ${n + 1}`;
  }
  return null;
}
