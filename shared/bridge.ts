/**
 * The bridge between the UI and the engine: one typed function table, used by
 *   - the engine service (electron/engine/service.ts), which implements it,
 *   - the Electron preload + main process (IPC), and the WebSocket bridge of browser mode,
 *   - the renderer, which calls it.
 *
 * Every operation takes one serialisable argument and returns a promise of one serialisable result, so
 * the same table goes over IPC and WebSocket unchanged. Streams are pushed as `BridgeEvent`s: an answer
 * arrives as token *deltas* tagged with the id of the request that started it, never the whole chat.
 * A request's abort path is `stop({requestId})` (the Stop button), which ends the answer within a token.
 */
import { z } from "zod";
import type { AnswerSummary, Candidate, TokenEvent } from "./events.js";
import type { ContextUsage } from "./chat.js";
import { TandemError } from "./errors.js";
import { samplingConfigSchema, type SamplingConfig, type SamplingSettings } from "./sampling.js";
import { ControlPatchSchema, type CloudControlView, type CloudSeenView, type ControlPatch } from "./cloudControl.js";

// ---------------------------------------------------------------------------------------------------
// Conversations

export type MessageStatus = "complete" | "stopped" | "error";

export interface StoredMessage {
  id: string;
  role: "user" | "assistant";
  content: string;
  createdAt: number;
  /** assistant answers: every token with its origin and router data, in order */
  tokens?: TokenEvent[];
  summary?: AnswerSummary;
  /** assistant answers: the sampling settings and seed it was drawn with (enough to reproduce it) */
  sampling?: SamplingSettings;
  status?: MessageStatus;
  error?: string;
  /** assistant answers: how much of the context window the prompt took, and what was left out */
  context?: ContextUsage;
  /**
   * The other versions of this point of the conversation (a regenerated answer, an edited message),
   * each the conversation's continuation from here in that version, its own forks inside it
   * (electron/engine/conversationVersions.ts). Absent: this is the only version.
   */
  versions?: StoredMessage[][];
  /** this version's place among all `versions.length + 1` of them, from 0 (with `versions`) */
  version?: number;
}

export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  messages: StoredMessage[];
  /** this conversation's system prompt; absent: the app's default (AppSettings.systemPrompt) */
  systemPrompt?: string;
  /** this conversation's sampling; absent: the app's default (AppSettings.sampling) */
  sampling?: SamplingConfig;
}

export interface ConversationMeta {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  messageCount: number;
}

export type ExportFormat = "markdown" | "json";

export interface ImportResult {
  imported: ConversationMeta[];
  /** how many came with an id already taken here (or twice in the file) and were given a new one */
  renamed: number;
}

/** A conversation that matches a search: where, and a few words around the first match. */
export interface SearchHit {
  conversationId: string;
  title: string;
  updatedAt: number;
  /** the first matching message (null: only the title matches) */
  messageId: string | null;
  /** the text around the match */
  snippet: string;
  /** messages that match */
  matches: number;
}

export interface ExportedConversation {
  filename: string;
  mime: string;
  content: string;
}

// ---------------------------------------------------------------------------------------------------
// Models, cloud, statistics

/** One stage of getting a model ready (the SLM on the device; the cloud's LLM when hosted in-process). */
export interface StageStatus {
  /** what is loaded or being loaded (a file name, an hf: URI) */
  source: string | null;
  /** display name of the loaded model */
  name: string | null;
  loaded: boolean;
  /** a clear, user-facing message (corrupt file, vocabulary mismatch, download failed...) */
  error: string | null;
  /** download progress in [0, 1]; null when nothing is downloading */
  progress: number | null;
}

export interface ModelStatus {
  slm: StageStatus;
  /** the LLM behind an in-process cloud server (browser mode, demo); null stage when the cloud is remote */
  llm: StageStatus;
  /** the router scoring tokens */
  router: string;
  /** the SLM download running or last run; null when none */
  download: DownloadState | null;
}

/** A model the user can download (the catalogue, filtered to models the device can run as its SLM). */
export interface CatalogueItem {
  id: string;
  name: string;
  /** approximate download size, bytes */
  sizeBytes: number;
  /** where it comes from (hf: URI or URL) */
  uri: string;
  /** the default choice on first run */
  recommended: boolean;
  /** licence of the weights (the model card's words); shown, and accepted when restrictive, before downloading */
  license?: string;
}

/** The one download that may be running (or the last one's outcome). */
export interface DownloadState {
  id: string;
  totalBytes: number;
  downloadedBytes: number;
  status: "downloading" | "done" | "cancelled" | "error";
  error: string | null;
}

/**
 * The servers a device can use as its cloud: Tandem's own token server (shared/protocol.ts), or an
 * existing serving engine through an adapter (electron/engine/cloud/adapters).
 */
export const CLOUD_KINDS = ["tandem", "llama.cpp", "vllm", "sglang"] as const;
export type CloudKind = (typeof CLOUD_KINDS)[number];

/** What the app's settings choose: one of the cloud kinds the app connects to (Tandem's so far), or none. */
export const CLOUD_SETTING_KINDS = ["tandem", "none"] as const satisfies readonly (CloudKind | "none")[];
export type CloudSettingKind = (typeof CLOUD_SETTING_KINDS)[number];

export interface CloudSettings {
  kind: CloudSettingKind;
  url: string;
  /** bearer token; never sent back to the UI in full (see CloudStatus.hasToken) */
  token: string;
}

export type CloudConnection = "unknown" | "connecting" | "online" | "offline" | "disabled";

export interface CloudStatus {
  kind: CloudSettingKind;
  url: string;
  hasToken: boolean;
  state: CloudConnection;
  /** why it is offline, or the cloud's model once online */
  detail: string | null;
  model: string | null;
}

export type Theme = "system" | "light" | "dark";

/** What settings.json keeps (electron/engine/settings.ts); the cloud token is kept apart. */
export interface AppSettings {
  tau?: number;
  cloudKind?: CloudSettingKind;
  cloudUrl?: string;
  theme?: Theme;
  /** the SLM (a GGUF path or hf: URI) */
  slm?: string;
  /** the SLM's context size in tokens; null or absent: what the model supports within memory */
  contextSize?: number | null;
  /** the system prompt of conversations that have none of their own */
  systemPrompt?: string;
  /** the sampling of conversations that have none of their own; absent: Balanced */
  sampling?: SamplingConfig;
}

/** The settings as in effect (command-line values included), for the Settings form. */
export interface SettingsView {
  tau: number;
  theme: Theme;
  cloud: { kind: CloudSettingKind; url: string; hasToken: boolean };
  /** where the token is kept: a 0600 file (browser mode) or encrypted by the OS keychain (the app) */
  tokenStorage: "file" | "keychain";
  slm: string | null;
  /** the chosen context size; null: the model's own */
  contextSize: number | null;
  /** the context size of the loaded SLM, null when none is loaded */
  loadedContextSize: number | null;
  systemPrompt: string;
  sampling: SamplingConfig;
}

/** The settings the form may change here (the cloud through setCloudSettings, the model through openLocalModel). */
export interface SettingsPatch {
  tau?: number;
  theme?: Theme;
  contextSize?: number | null;
  systemPrompt?: string;
  sampling?: SamplingConfig;
}

export interface LiveStats {
  /** the answer being generated, if any */
  active: { requestId: string; tokens: number; cloudTokens: number; fallbackTokens: number; tokensPerSecond: number } | null;
  totals: {
    answers: number;
    tokens: number;
    cloudTokens: number;
    fallbackTokens: number;
    cloudCalls: number;
    bytesUp: number;
    bytesDown: number;
  };
}

/** Everything the UI needs at start (and after a reconnect). */
export interface BridgeSnapshot {
  tau: number;
  conversations: ConversationMeta[];
  models: ModelStatus;
  cloud: CloudStatus;
  stats: LiveStats;
  /** notices from start-up, e.g. a corrupt conversation file set aside */
  notices: string[];
  /** the request streaming right now, if any (a reloaded page can re-attach to it) */
  activeRequest: { requestId: string; conversationId: string; messageId: string } | null;
}

// ---------------------------------------------------------------------------------------------------
// The function table

export interface AnswerHandle {
  requestId: string;
  conversationId: string;
  /** the assistant message being generated */
  messageId: string;
  /** the user message it answers (new for send / edit) */
  userMessageId: string;
}

/** Operation name → [argument, result]. The single source of truth for both sides. */
export interface BridgeOps {
  snapshot: [Record<string, never>, BridgeSnapshot];
  /** Starts an answer; resolves once it has started. Tokens follow as `answer` events with this requestId. */
  send: [{ requestId: string; conversationId: string; text: string }, AnswerHandle];
  /** Ends the answer of that request within one token (its partial answer is kept, status "stopped"). */
  stop: [{ requestId: string }, { stopped: boolean }];
  /** A new answer to the last user message; the earlier answers stay as versions of it (‹ 1/2 ›). */
  regenerate: [{ requestId: string; conversationId: string }, AnswerHandle];
  /** The edited user message and a new answer become a new branch; the old branch stays a version of it. */
  editAndResend: [{ requestId: string; conversationId: string; messageId: string; text: string }, AnswerHandle];
  /** Writes on where the last answer stopped at the token limit (the same message gets more tokens). */
  continueAnswer: [{ requestId: string; conversationId: string }, AnswerHandle];
  /** Makes version `version` (from 0) active where the message `messageId` of the active path has several. */
  selectVersion: [{ conversationId: string; messageId: string; version: number }, Conversation];
  /** τ for the next token, also in the middle of an answer. */
  setTau: [{ tau: number }, { tau: number }];
  listConversations: [Record<string, never>, ConversationMeta[]];
  getConversation: [{ id: string }, Conversation];
  createConversation: [{ title?: string }, Conversation];
  renameConversation: [{ id: string; title: string }, ConversationMeta];
  deleteConversation: [{ id: string }, { deleted: boolean }];
  exportConversation: [{ id: string; format: ExportFormat }, ExportedConversation];
  /** Every conversation, whole (versions, tokens and origins), as the app's JSON. */
  exportAll: [Record<string, never>, ExportedConversation];
  /** Adds the conversations of an export (all, or one); checks all of them first: one invalid refuses the file.
   *  `dryRun`: only checks (browser mode checks every part of a large file before importing any). */
  importConversations: [{ content: string; dryRun?: boolean }, ImportResult];
  /** Conversations whose title or message text (any version) contains the query (any case), newest first. */
  searchConversations: [{ query: string }, SearchHit[]];
  modelStatus: [Record<string, never>, ModelStatus];
  /** Loads a local GGUF as the SLM (clear error for a corrupt file or a vocabulary the cloud refuses). */
  openLocalModel: [{ path: string }, ModelStatus];
  /** The desktop app's native file dialog, then openLocalModel; null when the user cancels. */
  chooseLocalModel: [Record<string, never>, ModelStatus | null];
  /** The SLMs the user can download (first-run choice). */
  catalogue: [Record<string, never>, CatalogueItem[]];
  /** Starts downloading a catalogue SLM (resuming a partial file); progress arrives as `models` events,
   *  and the model is loaded as the SLM when the download completes. Resolves once it has started. */
  downloadModel: [{ id: string }, ModelStatus];
  /** Stops the running download, keeping the partial file for a later resume. */
  cancelDownload: [Record<string, never>, ModelStatus];
  cloudStatus: [Record<string, never>, CloudStatus];
  setCloudSettings: [CloudSettings, CloudStatus];
  stats: [Record<string, never>, LiveStats];
  /** The settings in effect. */
  getSettings: [Record<string, never>, SettingsView];
  /** Validates, saves and applies (a new context size reloads the SLM); nothing changes if a value is invalid. */
  updateSettings: [SettingsPatch, SettingsView];
  /** A conversation's own system prompt; null goes back to the app's default. */
  setSystemPrompt: [{ conversationId: string; systemPrompt: string | null }, Conversation];
  /** A conversation's own sampling; null goes back to the app's default. */
  setSampling: [{ conversationId: string; sampling: SamplingConfig | null }, Conversation];
  /** The SLM's top candidates at one token of a stored answer, re-evaluated on demand (the inspector's
   *  pinned token; refused while an answer is being generated). */
  candidates: [{ conversationId: string; messageId: string; index: number }, { candidates: Candidate[] }];
  /** The cloud controls (target share, budgets, local-only default), today's use, and the share τ would give. */
  cloudControl: [Record<string, never>, CloudControlView];
  /** Changes the cloud controls; a target share and an explicit τ exclude each other (setTau turns the share off). */
  updateCloudControl: [ControlPatch, CloudControlView];
  /** What the cloud has seen of a conversation, and whether it is local-only. */
  cloudSeen: [{ conversationId: string }, CloudSeenView];
  setLocalOnly: [{ conversationId: string; localOnly: boolean }, CloudSeenView];
  /** The server deletes the conversation's session and confirms it (refused when that cannot be confirmed). */
  forgetCloud: [{ conversationId: string }, CloudSeenView];
}

export type BridgeOp = keyof BridgeOps;
export type OpArg<K extends BridgeOp> = BridgeOps[K][0];
export type OpResult<K extends BridgeOp> = BridgeOps[K][1];

/** The callable table: what the renderer holds and the service implements. */
export type BridgeApi = { [K in BridgeOp]: (arg: OpArg<K>) => Promise<OpResult<K>> };

/** The operation names at run time (IPC/WebSocket dispatch accepts nothing else). */
export const BRIDGE_OPS = [
  "snapshot",
  "send",
  "stop",
  "regenerate",
  "editAndResend",
  "selectVersion",
  "continueAnswer",
  "setTau",
  "listConversations",
  "getConversation",
  "createConversation",
  "renameConversation",
  "deleteConversation",
  "exportConversation",
  "exportAll",
  "importConversations",
  "searchConversations",
  "modelStatus",
  "openLocalModel",
  "chooseLocalModel",
  "catalogue",
  "downloadModel",
  "cancelDownload",
  "cloudStatus",
  "setCloudSettings",
  "stats",
  "getSettings",
  "updateSettings",
  "setSystemPrompt",
  "setSampling",
  "candidates",
  "cloudControl",
  "updateCloudControl",
  "cloudSeen",
  "setLocalOnly",
  "forgetCloud",
] as const satisfies readonly BridgeOp[];

// A compile-time check that BRIDGE_OPS lists every operation: adding one to BridgeOps without listing
// it here makes this line fail to type-check.
type MissingOps = Exclude<BridgeOp, (typeof BRIDGE_OPS)[number]>;
export const BRIDGE_OPS_COMPLETE: MissingOps extends never ? true : MissingOps = true;

export function isBridgeOp(name: unknown): name is BridgeOp {
  return typeof name === "string" && (BRIDGE_OPS as readonly string[]).includes(name);
}

// ---------------------------------------------------------------------------------------------------
// Pushed events

export type BridgeEvent =
  /** `user` is the message answered, at position `at` of the active path: appended (send), a new branch
   *  (edit: the old one is a version of it), or kept (regenerate: the earlier answers are versions of
   *  the new one); the active path is then the messages before `at`, `user` and `answer` (empty). */
  | {
      type: "answer-start";
      handle: AnswerHandle;
      tau: number;
      user: StoredMessage;
      at?: number;
      answer?: StoredMessage;
      context?: ContextUsage;
    }
  /** new tokens of an answer, in order; batched (many per message) */
  | { type: "answer-delta"; requestId: string; conversationId: string; messageId: string; tokens: TokenEvent[] }
  | { type: "answer-end"; requestId: string; conversationId: string; message: StoredMessage }
  | { type: "answer-error"; requestId: string; conversationId: string; messageId: string; error: string }
  | { type: "tau"; tau: number }
  | { type: "settings"; settings: SettingsView }
  | { type: "conversations"; conversations: ConversationMeta[] }
  | { type: "models"; models: ModelStatus }
  | { type: "cloud"; cloud: CloudStatus }
  | { type: "stats"; stats: LiveStats }
  | { type: "notice"; message: string }
  | { type: "cloud-control"; control: CloudControlView }
  | { type: "cloud-seen"; seen: CloudSeenView };

export type BridgeListener = (event: BridgeEvent) => void;

/** What the renderer gets: the table plus a subscription to pushed events. */
export interface Bridge extends BridgeApi {
  subscribe(listener: BridgeListener): () => void;
}

// ---------------------------------------------------------------------------------------------------
// Wire format (WebSocket; IPC uses invoke/send with the same shapes)

export type WireRequest = { kind: "call"; id: number; op: BridgeOp; arg: unknown };
export type WireMessage =
  | { kind: "result"; id: number; ok: true; result: unknown }
  | { kind: "result"; id: number; ok: false; error: string }
  | { kind: "event"; event: BridgeEvent };

/** Validates an incoming call before dispatch: a malformed or unknown call is refused, never run. */
export function parseWireRequest(raw: string): WireRequest | null {
  const r = checkWireRequest(raw);
  return r.ok ? r.call : null;
}

/** A call that cannot be run: why, and its id when it had a usable one (so the caller can be answered). */
export type WireRefusal = { ok: false; id: number | null; error: string };

/** `parseWireRequest` with the reason for a refusal: a page waiting on a call with a good id gets an answer, not silence. */
export function checkWireRequest(raw: string): { ok: true; call: WireRequest } | WireRefusal {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return { ok: false, id: null, error: "Malformed call: not JSON" };
  }
  if (typeof v !== "object" || v === null) return { ok: false, id: null, error: "Malformed call: not an object" };
  const o = v as Record<string, unknown>;
  const id = Number.isSafeInteger(o.id) ? (o.id as number) : null;
  if (o.kind !== "call" || id === null) return { ok: false, id, error: "Malformed call: kind or id missing" };
  if (!isBridgeOp(o.op)) return { ok: false, id, error: `Unknown operation ${JSON.stringify(String(o.op).slice(0, 60))}` };
  if (typeof o.arg !== "object" || o.arg === null || Array.isArray(o.arg))
    return { ok: false, id, error: `Invalid ${o.op} call: the argument must be an object` };
  return { ok: true, call: { kind: "call", id, op: o.op, arg: o.arg } };
}

/** Longest import, characters (an export of all conversations) over IPC; browser mode's WebSocket takes MAX_WIRE_MESSAGE_BYTES. */
export const MAX_IMPORT_CHARS = 256 << 20;

/** Largest message the WebSocket bridge accepts from a page (a long pasted prompt fits comfortably). */
export const MAX_WIRE_MESSAGE_BYTES = 1 << 20;

// ---------------------------------------------------------------------------------------------------
// Arguments, validated per operation before the service runs (callOp: the IPC and WebSocket hosts)

const id = z.string().min(1).max(200);
const text = z.string().max(MAX_WIRE_MESSAGE_BYTES);
const none = z.object({});

/**
 * Each operation's argument schema, beside the table: what a page may send. Strings are bounded, numbers
 * ranged, enumerations closed; unknown fields are dropped. The check below keeps each schema's type and
 * the operation's argument type the same.
 */
export const BRIDGE_ARGS = {
  snapshot: none,
  send: z.object({ requestId: id, conversationId: id, text }),
  stop: z.object({ requestId: id }),
  regenerate: z.object({ requestId: id, conversationId: id }),
  editAndResend: z.object({ requestId: id, conversationId: id, messageId: id, text }),
  continueAnswer: z.object({ requestId: id, conversationId: id }),
  selectVersion: z.object({ conversationId: id, messageId: id, version: z.number().int().min(0).max(100_000) }),
  setTau: z.object({ tau: z.number().min(0).max(1) }),
  listConversations: none,
  getConversation: z.object({ id }),
  createConversation: z.object({ title: z.string().max(10_000).optional() }),
  renameConversation: z.object({ id, title: z.string().max(10_000) }),
  deleteConversation: z.object({ id }),
  exportConversation: z.object({ id, format: z.enum(["markdown", "json"]) }),
  exportAll: none,
  importConversations: z.object({ content: z.string().min(1).max(MAX_IMPORT_CHARS), dryRun: z.boolean().optional() }),
  searchConversations: z.object({ query: z.string().max(500) }),
  modelStatus: none,
  openLocalModel: z.object({ path: z.string().min(1).max(4096) }),
  catalogue: none,
  downloadModel: z.object({ id }),
  cancelDownload: none,
  cloudStatus: none,
  setCloudSettings: z.object({ kind: z.enum(CLOUD_SETTING_KINDS), url: z.string().max(4096), token: z.string().max(4096) }),
  stats: none,
  chooseLocalModel: none,
  getSettings: none,
  updateSettings: z.object({
    tau: z.number().min(0).max(1).optional(),
    theme: z.enum(["system", "light", "dark"]).optional(),
    contextSize: z.number().int().positive().nullable().optional(),
    systemPrompt: z.string().max(100_000).optional(),
    sampling: samplingConfigSchema.optional(),
  }),
  setSystemPrompt: z.object({ conversationId: id, systemPrompt: z.string().max(100_000).nullable() }),
  setSampling: z.object({ conversationId: id, sampling: samplingConfigSchema.nullable() }),
  candidates: z.object({ conversationId: id, messageId: id, index: z.number().int().min(0).max(1_000_000) }),
  cloudControl: none,
  updateCloudControl: ControlPatchSchema,
  cloudSeen: z.object({ conversationId: id }),
  setLocalOnly: z.object({ conversationId: id, localOnly: z.boolean() }),
  forgetCloud: z.object({ conversationId: id }),
} as const;

// compile-time: every operation has a schema, and each schema's type is its operation's argument type
type SameType<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type ArgMismatch = { [K in BridgeOp]: SameType<z.infer<(typeof BRIDGE_ARGS)[K]>, OpArg<K>> extends true ? never : K }[BridgeOp];
export const BRIDGE_ARGS_MATCH: ArgMismatch extends never ? true : ArgMismatch = true;

/** A call refused for its argument, before anything ran. */
export class BridgeArgumentError extends TandemError {
  constructor(message: string) {
    super("bad_argument", message);
    this.name = "BridgeArgumentError";
  }
}

/** The argument of a call to `op`, checked against its schema; throws BridgeArgumentError naming the first problem. */
export function parseBridgeArg<K extends BridgeOp>(op: K, arg: unknown): OpArg<K> {
  const r = (BRIDGE_ARGS[op] as z.ZodType).safeParse(arg);
  if (r.success) return r.data as OpArg<K>;
  const issue = r.error.issues[0]!;
  const where = issue.path.length ? issue.path.join(".") : "the argument";
  throw new BridgeArgumentError(`Invalid ${op} call: ${where}: ${issue.message}`);
}

/**
 * Calls one operation of a table by name: the IPC and WebSocket hosts' one way in. The argument is
 * validated against the operation's schema first, so the service never sees a malformed one.
 */
export function callOp(api: BridgeApi, op: BridgeOp, arg: unknown): Promise<unknown> {
  let checked: unknown;
  try {
    checked = parseBridgeArg(op, arg);
  } catch (err) {
    return Promise.reject(err);
  }
  // the table is indexed by a run-time name: TypeScript cannot correlate op and arg here, the schema did
  const fn = api[op] as (a: unknown) => Promise<unknown>;
  return fn(checked);
}
