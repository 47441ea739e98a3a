/**
 * What the crash test knows about the history the writer child produced: deterministic token contents,
 * and a model of the conversations built from the child's reports ("I ..." in flight, "C ..."
 * committed; see storeWriter.ts), against which the store's files are checked after every kill.
 */
import type { Conversation, StoredMessage } from "../../../shared/bridge.js";
import type { Origin, TokenEvent } from "../../../shared/events.js";
import { mulberry32 } from "../../../shared/prng.js";
export { mulberry32 };

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

// texts that stress the JSON lines: multi-byte characters, an emoji, quotes, backslashes, newlines
const TEXTS = ["Once", " upon", " a", " time", "\n", " é", "🙂", ' "q"', " \\", " <b>", ""];
const ORIGINS: Origin[] = ["local", "local", "cloud", "fallback"];

/** Token `index` of the answer `messageId`: the same every time, so a persisted token can be checked. */
export function tokenFor(messageId: string, index: number): TokenEvent {
  const h = hash(`${messageId}:${index}`);
  const origin = ORIGINS[h % ORIGINS.length];
  const tokenId = h % 151_936;
  return {
    index,
    tokenId,
    text: TEXTS[h % TEXTS.length],
    origin,
    confidence: (h % 1000) / 1000,
    tau: 0.5,
    cloudLatencyMs: origin === "local" ? null : (h % 300) / 10,
    slmTokenId: origin === "cloud" ? (h >>> 3) % 151_936 : tokenId,
    // the router data a real answer carries, so lines have a realistic size (~400 bytes)
    slmTop: [0, 1, 2, 3, 4].map((k) => ({ tokenId: (h >>> k) % 151_936, prob: 1 / (k + 2) })),
    ...(origin === "cloud" ? { cloud: { tokenId, logprob: -((h % 100) / 50), top: [] } } : {}),
    ...(origin === "fallback" ? { fallbackReason: "timeout" } : {}),
  };
}

export const textOf = (tokens: readonly TokenEvent[]) => tokens.map((t) => t.text).join("");

// ---------------------------------------------------------------------------------------------------
// The model: conversations as the child's reports describe them

export interface MsgModel {
  id: string;
  role: "user" | "assistant";
  tokens: number;
  /** undefined: the answer was streaming */
  status?: string;
}
export interface ConvModel {
  id: string;
  title: string;
  messages: MsgModel[];
}
export type Model = Map<string, ConvModel>;

/** One reported operation ("create", "start", "tok", ...) with its arguments. */
export interface Op {
  op: string;
  args: string[];
}

export function parseReport(line: string): { kind: "I" | "C"; op: Op } | null {
  const [kind, op, ...args] = line.split(" ");
  if (kind !== "I" && kind !== "C") return null;
  return { kind, op: { op, args } };
}

export function cloneModel(m: Model): Model {
  return new Map([...m].map(([id, c]) => [id, { ...c, messages: c.messages.map((x) => ({ ...x })) }]));
}

/**
 * Applies an operation to the model. `create` is applied with the id the commit reported, or, for a
 * create in flight (whose id the child never got to print), under the placeholder "?".
 */
export function applyOp(m: Model, { op, args }: Op, createdId = "?"): void {
  const conv = (id: string) => {
    const c = m.get(id);
    if (!c) throw new Error(`model: no conversation ${id} for ${op}`);
    return c;
  };
  switch (op) {
    case "create": {
      // "I create <title>" / "C create <id> <title>"
      const title = createdId === "?" ? args.join(" ") : args.slice(1).join(" ");
      m.set(createdId, { id: createdId, title, messages: [] });
      return;
    }
    case "rename":
      conv(args[0]).title = args.slice(1).join(" ");
      return;
    case "delete":
      m.delete(args[0]);
      return;
    case "start": {
      const [id, drop, userId, msgId] = args;
      const c = conv(id);
      c.messages.splice(c.messages.length - Number(drop));
      if (userId !== "-") c.messages.push({ id: userId, role: "user", tokens: 0 });
      c.messages.push({ id: msgId, role: "assistant", tokens: 0 });
      return;
    }
    case "tok": {
      const [id, msgId, n] = args;
      const msg = conv(id).messages.find((x) => x.id === msgId);
      if (!msg) throw new Error(`model: no message ${msgId}`);
      msg.tokens = Number(n);
      return;
    }
    case "end": {
      const msg = conv(args[0]).messages.find((x) => x.id === args[1]);
      if (!msg) throw new Error(`model: no message ${args[1]}`);
      msg.status = "complete";
      return;
    }
    default:
      throw new Error(`model: unknown op ${op}`);
  }
}

/** The model as the store must show it after a restart: an answer that was streaming is "stopped". */
export function afterRestart(m: Model): Model {
  const out = cloneModel(m);
  for (const c of out.values()) for (const x of c.messages) if (x.role === "assistant" && !x.status) x.status = "stopped";
  return out;
}

/** The model of what a reopened store holds; throws if a token or a text is not what was written. */
export function modelOfStore(convs: readonly Conversation[]): Model {
  const m: Model = new Map();
  for (const c of convs) {
    m.set(c.id, { id: c.id, title: c.title, messages: c.messages.map((x) => modelOfMessage(c, x)) });
  }
  return m;
}

function modelOfMessage(c: Conversation, x: StoredMessage): MsgModel {
  if (x.role === "user") return { id: x.id, role: "user", tokens: 0 };
  const tokens = x.tokens ?? [];
  tokens.forEach((t, i) => {
    const want = tokenFor(x.id, i);
    if (JSON.stringify(t) !== JSON.stringify(want)) {
      throw new Error(`conversation ${c.id}, answer ${x.id}: token ${i} is ${JSON.stringify(t)}, written as ${JSON.stringify(want)}`);
    }
  });
  if (x.content !== textOf(tokens)) throw new Error(`conversation ${c.id}, answer ${x.id}: its text does not match its tokens`);
  return { id: x.id, role: "assistant", tokens: tokens.length, status: x.status };
}

/**
 * Whether the store's conversations (`actual`) are those of `expected`: same titles, messages, token
 * counts and statuses. A conversation whose create was in flight is "?" in `expected` and matches the
 * one conversation of `actual` left over, whatever its id.
 */
export function sameModel(actual: Model, expected: Model): boolean {
  if (actual.size !== expected.size) return false;
  const key = (c: ConvModel, id = c.id) => JSON.stringify({ ...c, id });
  const unmatched = [...actual.values()].filter((c) => !expected.has(c.id) || key(c) !== key(expected.get(c.id)!));
  const placeholder = expected.get("?");
  if (!placeholder) return unmatched.length === 0;
  return unmatched.length === 1 && key(unmatched[0], "?") === key(placeholder);
}

export function describeModel(m: Model): string {
  return [...m.values()]
    .map(
      (c) =>
        `${c.id.slice(0, 8)} "${c.title}": ${c.messages.map((x) => (x.role === "user" ? "U" : `A${x.tokens}${x.status ? x.status[0] : "…"}`)).join(" ")}`,
    )
    .join("\n");
}
