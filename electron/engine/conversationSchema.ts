/**
 * The one schema every conversation file and journal line is checked against on load.
 *
 * Why a schema and not a few typeof checks: a field of the wrong type (`"tokensPerSecond": "fast"`) that
 * passed the old checks reached the UI and broke it on every start. Unknown fields are dropped (zod's
 * default), which also drops whatever is nested inside them: an extra field nested 200,000 deep made the
 * next snapshot's JSON.stringify overflow the stack and the store refuse to open.
 */
import { z } from "zod";
import type { Conversation } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { samplingConfigSchema, samplingSettingsSchema } from "../../shared/sampling.js";

/** Conversation ids are file names: letters, digits and dashes only (no dot, no space, no separator). */
export const CONVERSATION_ID = /^[A-Za-z0-9-]{1,64}$/;

const int = z.number().int();
const candidate = z.object({ tokenId: int, prob: z.number(), text: z.string().optional() });
const cloudVerdict = z.object({
  tokenId: int,
  logprob: z.number().optional(),
  top: z.array(z.object({ tokenId: int, logprob: z.number() })),
  fromDraft: z.boolean().optional(),
});

export const tokenEventSchema = z.object({
  index: int.min(0),
  tokenId: int,
  text: z.string(),
  origin: z.enum(["local", "cloud", "fallback"]),
  confidence: z.number(),
  tau: z.number(),
  cloudLatencyMs: z.number().nullable(),
  slmTokenId: int,
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

const message = z.object({
  id: z.string().min(1),
  role: z.enum(["user", "assistant"]),
  content: z.string(),
  createdAt: z.number(),
  tokens: z.array(tokenEventSchema).optional(),
  summary: summary.optional(),
  sampling: samplingSettingsSchema.optional(),
  status: z.enum(["complete", "stopped", "error"]).optional(),
  error: z.string().optional(),
});

export const conversationSchema = z.object({
  id: z.string().regex(CONVERSATION_ID, "not a valid conversation id (letters, digits and dashes only)"),
  title: z.string(),
  createdAt: z.number(),
  updatedAt: z.number(),
  messages: z.array(message),
  systemPrompt: z.string().optional(),
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
void sameConversation;
void sameToken;

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
