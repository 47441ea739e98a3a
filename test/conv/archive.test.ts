/**
 * Export all, import and search: a 10,000-message export imports back identically; an import is checked
 * whole before anything changes and never overwrites a conversation; search finds titles and message
 * text, in every version. The engine service here runs without models (TandemService.open): none of
 * this needs inference (versions made by real answers: versions.test.ts).
 */
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { exportAll, readImport } from "../../electron/engine/conversationArchive.js";
import { exportConversation } from "../../electron/engine/exportConversation.js";
import { TandemService } from "../../electron/engine/service.js";
import { parseBridgeArg, type Conversation, type StoredMessage } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";

const ORIGINS = ["local", "cloud", "fallback"] as const;
const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-archive-"));

function tokens(n: number, seed: number): TokenEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    index: i,
    tokenId: (seed * 31 + i) % 512,
    text: ` w${i}`,
    origin: ORIGINS[(seed + i) % 3],
    confidence: ((seed + i) % 100) / 100,
    tau: 0.5,
    cloudLatencyMs: (seed + i) % 3 === 1 ? 12.5 : null,
    slmTokenId: (seed * 17 + i) % 512,
    ...((seed + i) % 3 === 2 ? { fallbackReason: "deadline" } : {}),
  }));
}

/** A conversation of `n` messages; every 1,000th answer has an earlier version, every 2,500th user message an old branch. */
function bigConversation(id: string, n: number): Conversation {
  const messages: StoredMessage[] = [];
  for (let i = 0; i < n; i++) {
    const m: StoredMessage =
      i % 2 === 0
        ? { id: `${id}-m${i}`, role: "user", content: `question ${i} about kites`, createdAt: i }
        : { id: `${id}-m${i}`, role: "assistant", content: "", createdAt: i, tokens: tokens(4, i), status: "complete" };
    if (m.tokens) m.content = m.tokens.map((t) => t.text).join("");
    if (i % 1000 === 1) Object.assign(m, { versions: [[{ ...m, id: `${id}-old${i}`, content: "an older answer" }]], version: 1 });
    if (i % 2500 === 0 && i > 0)
      Object.assign(m, { versions: [[{ ...m, id: `${id}-branch${i}`, content: "the old question" }]], version: 1 });
    messages.push(m);
  }
  return { id, title: `Conversation ${id}`, createdAt: 1, updatedAt: n, messages, systemPrompt: "Be brief." };
}

const services: TandemService[] = [];
async function open(dataDir = tmp()): Promise<TandemService> {
  const s = await TandemService.open({ dataDir, cloud: { kind: "none", url: "", token: "" }, selfDistill: false });
  services.push(s);
  return s;
}
afterEach(async () => {
  for (const s of services.splice(0)) await s.close();
});

describe("export all and import", () => {
  it("a 10,000-message export imports back identically", () => {
    const big = bigConversation("big", 10_000);
    const small = bigConversation("small", 3);
    const file = exportAll([big, small]);
    expect(file.filename).toMatch(/^tandem-conversations-\d{4}-\d\d-\d\d\.json$/);
    const t0 = performance.now();
    const back = readImport(file.content, () => false);
    const ms = performance.now() - t0;
    expect(back.renamed).toBe(0);
    expect(back.conversations).toEqual([big, small]);
    expect(ms).toBeLessThan(20_000); // seconds at worst on a loaded machine; typically well under one
  });

  it("round-trips through the service and a restart; an id already here gets a new one, and nothing is overwritten", async () => {
    const dataDir = tmp();
    let s = await open(dataDir);
    const original = bigConversation("c-1", 7);
    const first = await s.importConversations({ content: exportAll([original]).content });
    expect(first).toMatchObject({ renamed: 0, imported: [{ id: "c-1", messageCount: 7 }] });
    // the same file again, plus one conversation twice: new ids, the one here untouched
    const again = exportAll([original, bigConversation("c-2", 2), bigConversation("c-2", 2)]).content;
    const second = await s.importConversations({ content: again });
    expect(second.renamed).toBe(2);
    const ids = second.imported.map((m) => m.id);
    expect(ids[1]).toBe("c-2");
    expect(new Set([...ids, "c-1"]).size).toBe(4);
    await s.close();
    s = await open(dataDir);
    expect(await s.getConversation({ id: "c-1" })).toEqual(original);
    expect(await s.getConversation({ id: ids[0] })).toEqual({ ...original, id: ids[0] });
    // and out again: the export of all holds them whole
    const out = JSON.parse((await s.exportAll({})).content);
    expect(out.conversations.find((c: Conversation) => c.id === "c-1")).toEqual(original);
  });

  it("imports one conversation's own JSON export too", async () => {
    const s = await open();
    const one = bigConversation("single", 4);
    const r = await s.importConversations({ content: exportConversation(one, "json").content });
    expect(r.imported.map((m) => m.id)).toEqual(["single"]);
    expect(await s.getConversation({ id: "single" })).toEqual(one);
  });

  it("refuses a file with one invalid conversation, naming it, and changes nothing", async () => {
    const dataDir = tmp();
    const s = await open(dataDir);
    const bad = { ...bigConversation("b", 3), title: "Broken" } as Conversation;
    (bad.messages[1].tokens![0] as { origin: string }).origin = "moon";
    const cases: [string, RegExp][] = [
      [
        exportAll([bigConversation("ok", 2), bad]).content,
        /conversation 2 \(“Broken”\) is not valid: message 2 is malformed \(tokens\.0\.origin/,
      ],
      ["{not json", /not JSON/],
      [JSON.stringify({ format: "something-else", version: 2, conversations: [] }), /not a Tandem export/],
      [JSON.stringify({ format: "tandem-conversations", version: 9, conversations: [] }), /not a Tandem export/],
    ];
    for (const [content, why] of cases) {
      await expect(s.importConversations({ content })).rejects.toThrow(why);
    }
    // a dry run (browser mode checks every part of a large file first) reports, and changes nothing
    const dry = await s.importConversations({ content: exportAll([bigConversation("ok", 2)]).content, dryRun: true });
    expect(dry.imported.map((m) => m.id)).toEqual(["ok"]);
    expect(await s.listConversations({})).toEqual([]);
    expect(readdirSync(path.join(dataDir, "conversations"))).toEqual([]);
  });

  it("an answer exported while streaming comes in as stopped", () => {
    const c = bigConversation("live", 2);
    delete c.messages[1].status;
    const [got] = readImport(exportAll([c]).content, () => false).conversations;
    expect(got.messages[1].status).toBe("stopped");
  });
});

describe("search across conversations", () => {
  it("finds titles and message text in any case, in every version, newest first; an empty query finds nothing", async () => {
    const s = await open();
    const a = { ...bigConversation("a", 3), title: "Kite festival", updatedAt: 10 };
    const b = { ...bigConversation("b", 3), title: "Gardening", updatedAt: 20 };
    b.messages[1] = { ...b.messages[1], versions: [[{ ...b.messages[1], id: "b-old", content: "Tomatoes\nneed SUN." }]], version: 1 };
    await s.importConversations({ content: exportAll([a, b]).content });
    const kites = await s.searchConversations({ query: "KITES" });
    expect(kites.map((h) => [h.conversationId, h.matches])).toEqual([
      ["b", 2],
      ["a", 2],
    ]);
    expect(kites[0]).toMatchObject({ messageId: "b-m0", snippet: "question 0 about kites" });
    const sun = await s.searchConversations({ query: "need sun" });
    expect(sun).toEqual([
      { conversationId: "b", title: "Gardening", updatedAt: 20, messageId: "b-old", snippet: "Tomatoes need SUN.", matches: 1 },
    ]);
    expect((await s.searchConversations({ query: "festival" })).map((h) => [h.conversationId, h.messageId])).toEqual([["a", null]]);
    expect(await s.searchConversations({ query: "   " })).toEqual([]);
    expect(await s.searchConversations({ query: "zebra" })).toEqual([]);
  });
});

describe("the new operations' arguments are checked before the service runs", () => {
  it("refuses malformed calls with the field named", () => {
    const bad: [Parameters<typeof parseBridgeArg>[0], unknown, RegExp][] = [
      ["importConversations", { content: "" }, /content/],
      ["importConversations", { content: 42 }, /content/],
      ["searchConversations", { query: "x".repeat(501) }, /query/],
      ["selectVersion", { conversationId: "c", messageId: "m", version: -1 }, /version/],
      ["selectVersion", { conversationId: "c", messageId: "m", version: 1.5 }, /version/],
      ["continueAnswer", { conversationId: "c" }, /requestId/],
    ];
    for (const [op, arg, why] of bad) expect(() => parseBridgeArg(op, arg), op).toThrow(why);
    expect(parseBridgeArg("selectVersion", { conversationId: "c", messageId: "m", version: 2, extra: 1 })).toEqual({
      conversationId: "c",
      messageId: "m",
      version: 2,
    });
  });
});
