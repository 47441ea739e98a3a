/**
 * Issue 16, class 4: conversation files that used to stop the store (and so the app) from opening, or
 * blanked the UI. Each is written as a real file; the store must open, load the good conversations,
 * set the bad ones aside with a notice, and keep a damaged journal's intact tokens and the journal.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConversationStore, JOURNAL_EXT, parseConversationFile } from "../../electron/engine/conversationStore.js";
import type { StoredMessage } from "../../shared/bridge.js";
import { errorMessage } from "../../shared/errors.js";

const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-hostile-conv-"));
const convDir = (dir: string) => path.join(dir, "conversations");
const token = (index: number, text = "x") => ({
  index,
  tokenId: index,
  text,
  origin: "local" as const,
  confidence: 0.9,
  tau: 0.5,
  cloudLatencyMs: null,
  slmTokenId: index,
});

function fileOf(conversation: object): string {
  return JSON.stringify({ version: 1, conversation });
}

function conv(id: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    title: `Chat ${id}`,
    createdAt: 1,
    updatedAt: 2,
    messages: [{ id: "u1", role: "user", content: "hi", createdAt: 1 }],
    ...extra,
  };
}

/** A store with one good conversation on disk; returns its dir and id. */
async function withGood(): Promise<{ dir: string; goodId: string }> {
  const dir = tmp();
  const s = await ConversationStore.open(dir);
  const good = await s.create("Good");
  await s.flush();
  return { dir, goodId: good.id };
}

describe("hostile conversation files (issue 16, class 4)", () => {
  it("ids with a space or a dot are set aside with a notice; the store opens and the good one loads", async () => {
    const { dir, goodId } = await withGood();
    writeFileSync(path.join(convDir(dir), "a b.json"), fileOf(conv("a b")));
    writeFileSync(path.join(convDir(dir), "a.b.json"), fileOf(conv("a.b")));
    const s = await ConversationStore.open(dir);
    expect(s.list().map((m) => m.id)).toEqual([goodId]);
    expect(s.notices).toHaveLength(2);
    for (const n of s.notices) expect(n).toMatch(/not a valid conversation: id: not a valid conversation id/);
    const names = readdirSync(convDir(dir));
    expect(names.filter((n) => n.startsWith("a b.json.corrupt-") || n.startsWith("a.b.json.corrupt-"))).toHaveLength(2);
  });

  it("an extra field nested 200,000 deep is dropped: the conversation loads and saves again", async () => {
    const { dir, goodId } = await withGood();
    const deep = "[".repeat(200_000) + "]".repeat(200_000);
    const text = fileOf(conv("deep-one")).replace('"messages":', `"plugin":${deep},"messages":`);
    writeFileSync(path.join(convDir(dir), "deep-one.json"), text);
    const s = await ConversationStore.open(dir);
    expect(s.notices).toEqual([]);
    expect(
      s
        .list()
        .map((m) => m.id)
        .sort(),
    ).toEqual(["deep-one", goodId].sort());
    const c = s.get("deep-one");
    expect("plugin" in c).toBe(false);
    c.messages.push({ id: "u2", role: "user", content: "still here", createdAt: 3 });
    await s.save(c.id); // a snapshot of the nested field overflowed the stack before
    const again = await ConversationStore.open(dir);
    expect(again.get("deep-one").messages.map((m) => m.content)).toEqual(["hi", "still here"]);
  });

  it("a journal that is a directory is moved aside with a notice; the conversation loads", async () => {
    const { dir, goodId } = await withGood();
    mkdirSync(path.join(convDir(dir), `${goodId}${JOURNAL_EXT}`));
    writeFileSync(path.join(convDir(dir), `${goodId}${JOURNAL_EXT}`, "inside"), "x");
    mkdirSync(path.join(convDir(dir), `orphan${JOURNAL_EXT}`)); // a journal without a conversation
    const s = await ConversationStore.open(dir);
    expect(s.list().map((m) => m.id)).toEqual([goodId]);
    expect(s.notices).toHaveLength(1);
    expect(s.notices[0]).toMatch(/journal of conversation "Good" could not be read .*moved aside/);
    const names = readdirSync(convDir(dir));
    const aside = names.find((n) => n.startsWith(`${goodId}${JOURNAL_EXT}.corrupt-`))!;
    expect(statSync(path.join(convDir(dir), aside)).isDirectory()).toBe(true);
    expect(names).not.toContain(`orphan${JOURNAL_EXT}`);
  });

  it('a wrongly typed field ("tokensPerSecond": "fast") is caught on load, set aside, the others load', async () => {
    const { dir, goodId } = await withGood();
    const summary = {
      tokens: 1,
      cloudTokens: 0,
      fallbackTokens: 0,
      cloudCalls: 0,
      bytesUp: 0,
      bytesDown: 0,
      tokensPerSecond: "fast",
      text: "x",
      stopReason: "eog",
      router: "r",
      elapsedMs: 1,
    };
    const messages = [
      { id: "u1", role: "user", content: "hi", createdAt: 1 },
      { id: "a1", role: "assistant", content: "x", createdAt: 2, tokens: [token(0)], summary, status: "complete" },
    ];
    const bad = fileOf(conv("typed-wrong", { messages }));
    writeFileSync(path.join(convDir(dir), "typed-wrong.json"), bad);
    const s = await ConversationStore.open(dir);
    expect(s.list().map((m) => m.id)).toEqual([goodId]);
    expect(s.notices).toHaveLength(1);
    expect(s.notices[0]).toMatch(
      /typed-wrong\.json could not be read \(not a valid conversation: message 2 is malformed \(summary\.tokensPerSecond: .*number/,
    );
    const aside = readdirSync(convDir(dir)).find((n) => n.startsWith("typed-wrong.json.corrupt-"))!;
    expect(readFileSync(path.join(convDir(dir), aside), "utf8")).toBe(bad);
  });

  it("a journal damaged in the middle keeps the tokens before and after the damage; the journal is kept aside", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const c = await s.create("Damaged");
    const msg: StoredMessage = { id: "a1", role: "assistant", content: "", createdAt: 2, tokens: [] };
    c.messages.push({ id: "u1", role: "user", content: "hi", createdAt: 1 }, msg);
    await s.save(c.id);
    for (const [i, text] of ["A", "B", "C", "D", "E", "F"].entries()) {
      const t = token(i, text);
      msg.tokens!.push(t);
      msg.content += text;
      await s.appendToken(c.id, msg.id, t);
    }
    await s.flush();
    const journal = path.join(convDir(dir), `${c.id}${JOURNAL_EXT}`);
    const lines = readFileSync(journal, "utf8").split("\n");
    // line 3 (token C) overwritten by garbage of the same length; stray bytes inserted after line 4
    lines[2] = "\u0000".repeat(lines[2].length);
    lines.splice(4, 0, "#@!garbage");
    const damaged = lines.join("\n");
    writeFileSync(journal, damaged);
    const again = await ConversationStore.open(dir);
    const m = again.get(c.id).messages[1];
    expect(m.tokens!.map((t) => t.text)).toEqual(["A", "B", "D", "E", "F"]);
    expect(m.tokens!.map((t) => t.index)).toEqual([0, 1, 2, 3, 4]);
    expect(m.content).toBe("ABDEF");
    expect(m.status).toBe("stopped");
    expect(again.notices).toHaveLength(1);
    expect(again.notices[0]).toMatch(/damaged at lines 3, 5 \(1 token missing\); the intact tokens before and after/);
    const aside = readdirSync(convDir(dir)).find((n) => n.startsWith(`${c.id}${JOURNAL_EXT}.corrupt-`));
    expect(aside, "the damaged journal is kept").toBeDefined();
    expect(readFileSync(path.join(convDir(dir), aside!), "utf8")).toBe(damaged);
    // and the recovered answer is in the snapshot: the next start is clean
    const third = await ConversationStore.open(dir);
    expect(third.notices).toEqual([]);
    expect(third.get(c.id).messages[1].content).toBe("ABDEF");
  });

  it("property: any JSON value as a conversation file either loads as a valid conversation or is rejected with a reason", () => {
    const anyConv = fc.record(
      {
        id: fc.oneof(fc.constantFrom("ok-1", "a b", "a.b", "", "../x"), fc.string()),
        title: fc.oneof(fc.string(), fc.integer()),
        createdAt: fc.oneof(fc.integer(), fc.string()),
        updatedAt: fc.integer(),
        messages: fc.array(
          fc.record(
            {
              id: fc.string(),
              role: fc.constantFrom("user", "assistant", "wizard"),
              content: fc.oneof(fc.string(), fc.constant(null)),
              createdAt: fc.integer(),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 4 },
        ),
        extra: fc.jsonValue({ maxDepth: 6 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(anyConv, (c) => {
        let loaded;
        try {
          loaded = parseConversationFile(fileOf(c));
        } catch (err) {
          expect(errorMessage(err)).toMatch(/not a valid conversation|not a Tandem conversation file/);
          return;
        }
        expect(loaded.id).toMatch(/^[A-Za-z0-9-]{1,64}$/);
        expect(typeof loaded.title).toBe("string");
        expect("extra" in loaded).toBe(false);
        for (const m of loaded.messages) expect(["user", "assistant"]).toContain(m.role);
        JSON.stringify(loaded); // what the next snapshot does
      }),
      { numRuns: 500, seed: 16 },
    );
  });
});
