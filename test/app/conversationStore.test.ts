/**
 * Persistence: atomic snapshots, the token journal and its replay, a crash mid-write, corrupt files set
 * aside while the others load. (Repeated SIGKILLs of a real writer: crash.test.ts.)
 */
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConversationStore, JOURNAL_EXT, STORE_VERSION } from "../../electron/engine/conversationStore.js";
import { TandemService } from "../../electron/engine/service.js";
import type { Conversation, StoredMessage } from "../../shared/bridge.js";
import { presetConfig } from "../../shared/sampling.js";

const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-store-"));
const token = (index: number, text = "x") => ({
  index,
  tokenId: index,
  text,
  origin: "cloud" as const,
  confidence: 0.2,
  tau: 0.5,
  cloudLatencyMs: 4,
  slmTokenId: 7,
});
const convDir = (dir: string) => path.join(dir, "conversations");

/** A conversation with one answer streaming, as the service leaves it after the start snapshot. */
async function streaming(dir: string): Promise<{ s: ConversationStore; c: Conversation; msg: StoredMessage }> {
  const s = await ConversationStore.open(dir);
  const c = await s.create("Streaming");
  c.messages.push({ id: "u1", role: "user", content: "hi", createdAt: 1 });
  const msg: StoredMessage = { id: "a1", role: "assistant", content: "", createdAt: 2, tokens: [] };
  c.messages.push(msg);
  await s.save(c.id);
  return { s, c, msg };
}

async function appendTokens(s: ConversationStore, c: Conversation, msg: StoredMessage, texts: string[]): Promise<void> {
  for (const text of texts) {
    const t = token(msg.tokens!.length, text);
    msg.tokens!.push(t);
    msg.content += text;
    await s.appendToken(c.id, msg.id, t);
  }
}

describe("conversation store", () => {
  it("saves and loads conversations with every token's origin and router data", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const c = await s.create("First");
    c.messages.push({ id: "m", role: "assistant", content: "x", createdAt: 1, tokens: [token(0)] });
    await s.save(c.id);
    const again = await ConversationStore.open(dir);
    expect(again.list().map((m) => m.title)).toEqual(["First"]);
    expect(again.get(c.id).messages[0].tokens![0]).toEqual(token(0));
    expect(again.notices).toEqual([]);
  });

  it("a crash mid-write leaves the previous version intact (the temporary file is dropped at start)", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const c = await s.create("Before");
    s.hooks = {
      afterPartialWrite: () => {
        throw new Error("simulated crash: power lost mid-write");
      },
    };
    c.title = "After";
    await expect(s.save(c.id)).rejects.toThrow(/simulated crash/);
    // a real crash leaves the temporary file behind: put one back as it would be
    writeFileSync(path.join(dir, "conversations", `${c.id}.json.tmp-deadbeef`), '{"version":1,"conversa');
    const reopened = await ConversationStore.open(dir);
    expect(reopened.get(c.id).title).toBe("Before");
    expect(reopened.notices).toEqual([]);
    expect(readdirSync(path.join(dir, "conversations"))).toEqual([`${c.id}.json`]);
  });

  it("a corrupt file is moved aside with a clear notice; the others load", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    await s.create("Good");
    writeFileSync(path.join(dir, "conversations", "broken.json"), "{ not json");
    const again = await ConversationStore.open(dir);
    expect(again.list().map((m) => m.title)).toEqual(["Good"]);
    expect(again.notices).toHaveLength(1);
    expect(again.notices[0]).toMatch(/could not be read .* moved aside to .*broken\.json\.corrupt-\d+/);
    const files = readdirSync(path.join(dir, "conversations"));
    expect(files.some((f) => f.startsWith("broken.json.corrupt-"))).toBe(true);
    expect(
      readFileSync(
        path.join(
          dir,
          "conversations",
          files.find((f) => f.startsWith("broken"))!,
        ),
        "utf8",
      ),
    ).toBe("{ not json");
  });

  it("rename and delete persist", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const a = await s.create("A");
    const b = await s.create("B");
    await s.rename(a.id, "  Renamed  ");
    await s.delete(b.id);
    const again = await ConversationStore.open(dir);
    expect(again.list().map((m) => m.title)).toEqual(["Renamed"]);
  });

  it("tokens appended to the journal survive a crash: replayed, the answer kept as stopped, the journal folded in", async () => {
    const dir = tmp();
    const { s, c, msg } = await streaming(dir);
    await appendTokens(s, c, msg, ["Once", " upon", " é🙂", '\n"q"']);
    // the process dies here: no end-of-answer snapshot; the snapshot on disk has an empty answer
    expect(JSON.parse(readFileSync(path.join(convDir(dir), `${c.id}.json`), "utf8")).conversation.messages[1].tokens).toEqual([]);
    const again = await ConversationStore.open(dir);
    const m = again.get(c.id).messages[1];
    expect(m.tokens).toEqual([token(0, "Once"), token(1, " upon"), token(2, " é🙂"), token(3, '\n"q"')]);
    expect(m.content).toBe('Once upon é🙂\n"q"');
    expect(m.status).toBe("stopped");
    expect(again.notices).toEqual([]);
    // folded into a new snapshot: the next answer starts a clean journal
    expect(readdirSync(convDir(dir))).toEqual([`${c.id}.json`]);
    const third = await ConversationStore.open(dir);
    expect(third.get(c.id).messages[1].tokens).toHaveLength(4);
  });

  it("a line torn by the crash (the token being written) is dropped; the ones before it are kept", async () => {
    const dir = tmp();
    const { s, c, msg } = await streaming(dir);
    await appendTokens(s, c, msg, ["a", "b"]);
    await s.flush();
    const journal = path.join(convDir(dir), `${c.id}${JOURNAL_EXT}`);
    const full = JSON.stringify({ m: msg.id, t: token(2, "c") });
    appendFileSync(journal, full.slice(0, full.length >> 1)); // killed in the middle of write(2)
    const again = await ConversationStore.open(dir);
    expect(again.notices).toEqual([]);
    expect(again.get(c.id).messages[1].tokens!.map((t) => t.text)).toEqual(["a", "b"]);
  });

  it("the end-of-answer snapshot removes the journal; a journal left beside it (crash between the two) duplicates nothing", async () => {
    const dir = tmp();
    const { s, c, msg } = await streaming(dir);
    await appendTokens(s, c, msg, ["a", "b", "c"]);
    const journal = path.join(convDir(dir), `${c.id}${JOURNAL_EXT}`);
    const lines = readFileSync(journal, "utf8");
    msg.status = "complete";
    await s.save(c.id);
    expect(existsSync(journal)).toBe(false);
    writeFileSync(journal, lines); // as if the process died after the rename, before the unlink
    const again = await ConversationStore.open(dir);
    expect(again.get(c.id).messages[1]).toMatchObject({ content: "abc", status: "complete" });
    expect(again.get(c.id).messages[1].tokens).toHaveLength(3);
  });

  it("journal lines of an answer replaced since (regenerate) are ignored; an orphan journal is removed", async () => {
    const dir = tmp();
    const { s, c, msg } = await streaming(dir);
    await appendTokens(s, c, msg, ["old"]);
    await s.flush();
    const journal = path.join(convDir(dir), `${c.id}${JOURNAL_EXT}`);
    const stale = readFileSync(journal, "utf8");
    c.messages.pop(); // regenerate: the answer is replaced by a new one
    c.messages.push({ id: "a2", role: "assistant", content: "", createdAt: 3, tokens: [] });
    await s.save(c.id);
    writeFileSync(journal, stale);
    writeFileSync(path.join(convDir(dir), `0000-gone${JOURNAL_EXT}`), stale); // its conversation was deleted
    const again = await ConversationStore.open(dir);
    expect(again.get(c.id).messages.map((m) => m.id)).toEqual(["u1", "a2"]);
    expect(again.get(c.id).messages[1].tokens).toEqual([]);
    expect(again.notices).toEqual([]);
    expect(readdirSync(convDir(dir))).toEqual([`${c.id}.json`]);
  });

  it("a journal damaged before its last line: the tokens before and after the damage are kept, with a notice", async () => {
    const dir = tmp();
    const { s, c, msg } = await streaming(dir);
    await appendTokens(s, c, msg, ["a", "b"]);
    await s.flush();
    const journal = path.join(convDir(dir), `${c.id}${JOURNAL_EXT}`);
    appendFileSync(journal, "garbage\n" + JSON.stringify({ m: msg.id, t: token(2, "c") }) + "\n");
    const again = await ConversationStore.open(dir);
    // issue 16: a damaged line no longer loses every token after it
    expect(again.get(c.id).messages[1].tokens!.map((t) => t.text)).toEqual(["a", "b", "c"]);
    expect(again.notices).toHaveLength(1);
    expect(again.notices[0]).toMatch(/journal of conversation "Streaming" is damaged at line 3/);
  });

  it("every kind of corrupt file is set aside with a notice naming it and why; the good ones load", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const good = await s.create("Good");
    await s.create("Also good");
    const valid = readFileSync(path.join(convDir(dir), `${good.id}.json`), "utf8");
    const bad: Record<string, [string, RegExp]> = {
      "empty.json": ["", /the file is empty/],
      "truncated.json": [valid.slice(0, valid.length - 7), /not valid JSON/],
      "binary.json": ["\u0000\u0001\u00ff garbage", /not valid JSON/],
      "other-app.json": ['{"settings": {"theme": "dark"}}', /not a Tandem conversation file/],
      "future.json": [valid.replace(`"version":${STORE_VERSION}`, '"version":99'), /not a Tandem conversation file/],
      "bad-message.json": [valid.replace('"messages":[]', '"messages":[{"role":"wizard"}]'), /message 1 is malformed/],
      "wrong-id.json": [valid, /holds conversation .*, not wrong-id\.json/],
    };
    for (const [name, [content]] of Object.entries(bad)) writeFileSync(path.join(convDir(dir), name), content);
    writeFileSync(path.join(convDir(dir), `truncated${JOURNAL_EXT}`), "{}\n"); // goes aside with its conversation
    const again = await ConversationStore.open(dir);
    expect(
      again
        .list()
        .map((m) => m.title)
        .sort(),
    ).toEqual(["Also good", "Good"]);
    expect(again.notices).toHaveLength(Object.keys(bad).length);
    for (const [name, [content, why]] of Object.entries(bad)) {
      const notice = again.notices.find((n) => n.includes(`${name}.corrupt-`));
      expect(notice, name).toMatch(/could not be read/);
      expect(notice, name).toMatch(why);
      const aside = readdirSync(convDir(dir)).find((f) => f.startsWith(`${name}.corrupt-`))!;
      expect(readFileSync(path.join(convDir(dir), aside), "utf8"), `${name} is kept as it was`).toBe(content);
    }
    expect(readdirSync(convDir(dir)).some((f) => f.startsWith(`truncated${JOURNAL_EXT}.corrupt-`))).toBe(true);
    // set aside once: the next start is clean
    expect((await ConversationStore.open(dir)).notices).toEqual([]);
  });

  it("the service shows the store's notices to the UI (the snapshot the renderer reads at start)", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    await s.create("Kept");
    writeFileSync(path.join(convDir(dir), "broken.json"), "{ not json");
    const service = await TandemService.start({ dataDir: dir, slm: null });
    try {
      const snap = await service.snapshot();
      expect(snap.conversations.map((c) => c.title)).toEqual(["Kept"]);
      expect(snap.notices).toHaveLength(1);
      expect(snap.notices[0]).toMatch(/broken\.json.*could not be read \(not valid JSON.*moved aside to .*broken\.json\.corrupt-\d+/);
    } finally {
      await service.close();
    }
  });
});

describe("a conversation's own settings", () => {
  it("keeps its system prompt and sampling across a reopen", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tandem-conv-own-"));
    const s = await ConversationStore.open(dir);
    const c = await s.create("own settings");
    c.systemPrompt = "Answer in French.";
    c.sampling = { ...presetConfig("creative"), seed: 7 };
    await s.save(c.id);
    await s.flush();
    const again = (await ConversationStore.open(dir)).get(c.id);
    expect(again.systemPrompt).toBe("Answer in French.");
    expect(again.sampling).toEqual({ ...presetConfig("creative"), seed: 7 });
  });
});
