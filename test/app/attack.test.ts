/**
 * This round's surfaces attacked through browser mode's real WebSocket bridge (a real engine service
 * with the stories260K pair, a real HTTP/WebSocket server): every refused call is answered with a clear
 * error, and what a page could not set through an operation cannot come in through a title, an import
 * or a file either.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { bindService, TandemService } from "../../electron/engine/service.js";
import { MAX_TITLE_CHARS } from "../../electron/engine/conversationSchema.js";
import { MAX_SYSTEM_PROMPT_CHARS } from "../../electron/engine/settings.js";
import type { BridgeEvent, Conversation, ConversationMeta, ImportResult } from "../../shared/bridge.js";
import { startWebServer, type WebServer } from "../../web/server.js";
import { storiesPair } from "../helpers/pair.js";

const pair = await storiesPair();

let service: TandemService;
let web: WebServer;
beforeAll(async () => {
  if (!pair) return;
  const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-attack-"));
  const statics = mkdtempSync(path.join(tmpdir(), "tandem-attack-static-"));
  service = await TandemService.start({
    dataDir,
    slm: pair.slm,
    tau: 0,
    maxTokens: 40,
    paceMs: 20, // an answer streams long enough to be attacked while it does
    contextSize: 256,
    selfDistill: false,
    cloud: { kind: "none", url: "", token: "" },
  });
  web = await startWebServer({ staticDir: statics, api: bindService(service), subscribe: (l) => service.subscribe(l), port: 0 });
}, 90_000);
afterAll(async () => {
  await web?.close();
  await service?.close();
});

type Reply = { id: number; ok: boolean; result?: unknown; error?: string };

/** A page's connection: calls by id, results and events as they come. */
class Page {
  private next = 1;
  private waiting = new Map<number, (r: Reply) => void>();
  readonly events: BridgeEvent[] = [];
  closeCode: Promise<number>;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (d) => {
      const m = JSON.parse(d.toString());
      if (m.kind === "event") this.events.push(m.event);
      else this.waiting.get(m.id)?.(m);
    });
    this.closeCode = new Promise((r) => ws.once("close", (code) => r(code)));
  }
  static async open(): Promise<Page> {
    const origin = web.url.replace(/\/$/, "");
    const ws = new WebSocket(web.url.replace("http", "ws") + "bridge", { origin });
    await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
    return new Page(ws);
  }
  /** Sends raw text and waits for the reply with that id (or gives up after `ms`: null). */
  raw(text: string, id: number, ms = 5_000): Promise<Reply | null> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(null), ms);
      this.waiting.set(id, (r) => (clearTimeout(t), resolve(r)));
      this.ws.send(text);
    });
  }
  call(op: string, arg: unknown): Promise<Reply> {
    const id = this.next++;
    return this.raw(JSON.stringify({ kind: "call", id, op, arg }), id, 30_000).then((r) => r ?? { id, ok: false, error: "no reply" });
  }
  async ok<T>(op: string, arg: unknown): Promise<T> {
    const r = await this.call(op, arg);
    if (!r.ok) throw new Error(`${op}: ${r.error}`);
    return r.result as T;
  }
  close(): void {
    this.ws.close();
  }
}

const archive = (...conversations: unknown[]) => JSON.stringify({ format: "tandem-conversations", version: 2, conversations });
const conversation = (over: Record<string, unknown> = {}) => ({
  id: "imported-1",
  title: "imported",
  createdAt: 1,
  updatedAt: 1,
  messages: [{ id: "u1", role: "user", content: "Once upon a time", createdAt: 1 }],
  ...over,
});
const token = (index: number, tokenId: number) => ({
  index,
  tokenId,
  text: " x",
  origin: "local",
  confidence: 1,
  tau: 0,
  cloudLatencyMs: null,
  slmTokenId: tokenId,
});

describe.skipIf(!pair)("attack: refused calls are answered, not dropped", () => {
  it("an unknown operation or a non-object argument gets an error naming it before the socket closes", async () => {
    const cases: [string, RegExp][] = [
      [JSON.stringify({ kind: "call", id: 7, op: "constructor", arg: {} }), /Unknown operation "constructor"/],
      [JSON.stringify({ kind: "call", id: 7, op: "formatDisk", arg: {} }), /Unknown operation "formatDisk"/],
      [JSON.stringify({ kind: "call", id: 7, op: "setTau", arg: [0.5] }), /Invalid setTau call: the argument must be an object/],
      [JSON.stringify({ kind: "call", id: 7, op: "snapshot" }), /Invalid snapshot call/],
    ];
    for (const [text, error] of cases) {
      const page = await Page.open();
      const reply = await page.raw(text, 7);
      expect(reply, text).toMatchObject({ id: 7, ok: false });
      expect(reply!.error).toMatch(error);
      expect(await page.closeCode).toBe(1008);
    }
    // the host serves the next page as before
    const page = await Page.open();
    expect((await page.ok<{ tau: number }>("setTau", { tau: 0 })).tau).toBe(0);
    page.close();
  });

  it("a flood of 2,000 calls in one burst: every one answered, in a bounded time, and the host still serves", async () => {
    const page = await Page.open();
    const started = Date.now();
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        i % 2 ? page.call("searchConversations", { query: "x".repeat(400) }) : page.call("setTau", { tau: Number.NaN }),
      ),
    );
    expect(replies.every((r) => r.error !== "no reply")).toBe(true);
    expect(replies.filter((r, i) => i % 2 === 0).every((r) => !r.ok && /Invalid setTau call: tau/.test(r.error!))).toBe(true);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await page.ok("listConversations", {})).toBeInstanceOf(Array);
    page.close();
  }, 60_000);
});

describe.skipIf(!pair)("attack: titles are one bounded line of printable text, whatever set them", () => {
  const hostile = "a\u001b[31mb\r\n# Forged heading\u0000c\u202eevil\u0007";

  it("create and rename: control characters, line breaks and bidi overrides become spaces", async () => {
    const page = await Page.open();
    const created = await page.ok<Conversation>("createConversation", { title: hostile });
    expect(created.title).toBe("a [31mb # Forged heading c evil");
    const renamed = await page.ok<ConversationMeta>("renameConversation", { id: created.id, title: `\n\t${"é".repeat(5000)}😀` });
    expect(Array.from(renamed.title)).toHaveLength(MAX_TITLE_CHARS);
    const md = await page.ok<{ content: string }>("exportConversation", { id: created.id, format: "markdown" });
    expect(md.content.split("\n")[0]).toBe(`# ${"é".repeat(MAX_TITLE_CHARS)}`);
    // only control characters: the title it had stays
    expect((await page.ok<ConversationMeta>("renameConversation", { id: created.id, title: "\u0000\n\u001b" })).title).toBe(renamed.title);
    page.close();
  });

  it("an answer's first words: a first message with control characters titles the chat without them", async () => {
    const page = await Page.open();
    const c = await page.ok<Conversation>("createConversation", {});
    const h = await page.ok<{ requestId: string }>("send", {
      requestId: "title-1",
      conversationId: c.id,
      text: "\u001b]0;pwned\u0007Once upon",
    });
    await page.ok("stop", { requestId: h.requestId });
    const list = await page.ok<ConversationMeta[]>("listConversations", {});
    expect(list.find((m) => m.id === c.id)!.title).toBe("]0;pwned Once upon");
    page.close();
  });

  it("an import: a 300,000-character title with control characters comes in as one bounded line", async () => {
    const page = await Page.open();
    const r = await page.ok<ImportResult>("importConversations", {
      content: archive(conversation({ title: `x\n\u001b[2J${"t".repeat(300_000)}` })),
    });
    expect(r.imported[0]!.title).toBe(`x [2J${"t".repeat(MAX_TITLE_CHARS - 5)}`);
    page.close();
  });
});

describe.skipIf(!pair)("attack: an import brings in nothing an operation would refuse; refused, nothing is imported", () => {
  const refused: [string, unknown, RegExp][] = [
    [
      "a system prompt longer than setSystemPrompt takes",
      conversation({ systemPrompt: "s".repeat(MAX_SYSTEM_PROMPT_CHARS + 1) }),
      /systemPrompt/,
    ],
    [
      "a negative token id",
      conversation({
        messages: [
          { id: "u1", role: "user", content: "hi", createdAt: 1 },
          { id: "a1", role: "assistant", content: " x", createdAt: 1, status: "complete", tokens: [token(0, -3)] },
        ],
      }),
      /tokenId/,
    ],
    [
      "a user message carrying an answer's tokens",
      conversation({ messages: [{ id: "u1", role: "user", content: "hi", createdAt: 1, tokens: [token(0, 3)] }] }),
      /user's but carries an answer's tokens/,
    ],
  ];

  it.each(refused)("%s", async (_what, bad, reason) => {
    const page = await Page.open();
    const before = await page.ok<ConversationMeta[]>("listConversations", {});
    // a good conversation first: an all-or-nothing import brings in neither
    const r = await page.call("importConversations", { content: archive(conversation({ id: "good-one" }), bad) });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/^Nothing was imported: conversation 2/);
    expect(r.error).toMatch(reason);
    expect(await page.ok<ConversationMeta[]>("listConversations", {})).toEqual(before);
    page.close();
  });
});

describe.skipIf(!pair)("attack: stored token ids the loaded model does not have", () => {
  it("continue and the inspector refuse them with a reason, and the stored answer stays as it was", async () => {
    const page = await Page.open();
    const summary = {
      tokens: 3,
      cloudTokens: 0,
      fallbackTokens: 0,
      cloudCalls: 0,
      bytesUp: 0,
      bytesDown: 0,
      tokensPerSecond: 1,
      text: " x x x",
      stopReason: "max-tokens",
      router: "confidence",
      elapsedMs: 1,
    };
    const answer = { id: "a1", role: "assistant", content: " x x x", createdAt: 1, status: "complete", summary };
    const r = await page.ok<ImportResult>("importConversations", {
      content: archive(
        conversation({
          id: "foreign-tokens",
          messages: [
            { id: "u1", role: "user", content: "Once upon a time", createdAt: 1 },
            { ...answer, tokens: [token(0, 5), token(1, 99_999_999), token(2, 6)] },
          ],
        }),
      ),
    });
    const id = r.imported[0]!.id;
    const before = await page.ok<Conversation>("getConversation", { id });
    const cont = await page.call("continueAnswer", { requestId: "foreign-1", conversationId: id });
    expect(cont.ok).toBe(false);
    expect(cont.error).toMatch(/token ids the loaded model does not have/);
    const inspect = await page.call("candidates", { conversationId: id, messageId: "a1", index: 2 });
    expect(inspect.ok).toBe(false);
    expect(inspect.error).toMatch(/token ids the loaded model does not have/);
    await new Promise((r) => setTimeout(r, 300)); // an answer that had started would have failed by now
    expect(await page.ok<Conversation>("getConversation", { id })).toEqual(before);
    // the engine answers as before
    const c = await page.ok<Conversation>("createConversation", {});
    await page.ok("send", { requestId: "after-foreign", conversationId: c.id, text: "Once upon a time" });
    await page.ok("stop", { requestId: "after-foreign" });
    page.close();
  });
});

describe.skipIf(!pair)("attack: a page that floods calls and never reads the replies", () => {
  it("is disconnected once its unread replies pass the bound, instead of growing the engine's memory", async () => {
    const page = await Page.open();
    // a conversation of about 1 MB: every exportAll reply carries it
    const big = conversation({ id: "big-one", messages: [{ id: "u1", role: "user", content: "w ".repeat(450_000), createdAt: 1 }] });
    await page.ok("importConversations", { content: archive(big) });
    const socket = (page.ws as unknown as { _socket: import("node:net").Socket })._socket;
    socket.pause(); // the page stops reading
    let replies = 0;
    page.ws.on("message", () => replies++);
    const calls = 120;
    for (let i = 0; i < calls; i++) page.ws.send(JSON.stringify({ kind: "call", id: 10_000 + i, op: "exportAll", arg: {} }));
    await new Promise((r) => setTimeout(r, 4000));
    socket.resume();
    const code = await Promise.race([page.closeCode, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    expect(code, `${replies} replies read, no disconnect`).not.toBeNull();
    expect(replies).toBeLessThan(calls);
    // other pages are served as before
    const other = await Page.open();
    expect(await other.ok("listConversations", {})).toBeInstanceOf(Array);
    other.close();
  }, 60_000);
});
