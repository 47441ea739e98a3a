/**
 * Versions and branches: Regenerate keeps the earlier answers, an edit forks a branch and the old one
 * stays reachable; the active path is what the model reads; everything round-trips through save and
 * reload, export and import; a conversation file of the format before versions (test/conv/fixtures/conversation-v1.json,
 * written by that version of the app) loads unchanged.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ConversationStore, STORE_VERSION } from "../../electron/engine/conversationStore.js";
import { MAX_FORK_DEPTH, parseConversation } from "../../electron/engine/conversationSchema.js";
import { fork, selectVersion, versionCount } from "../../electron/engine/conversationVersions.js";
import { TandemService } from "../../electron/engine/service.js";
import type { BridgeEvent, Conversation, StoredMessage } from "../../shared/bridge.js";
import { storiesPair } from "../helpers/pair.js";

const FIXTURE_V1 = path.join(import.meta.dirname, "fixtures", "conversation-v1.json");
const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-versions-"));
const msg = (id: string, role: "user" | "assistant" = "user"): StoredMessage => ({ id, role, content: id, createdAt: 1 });
const ids = (p: readonly StoredMessage[]) => p.map((m) => m.id);
const deepFreeze = <T>(v: T): T => {
  if (v && typeof v === "object") {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
};

describe("versions of a path (pure)", () => {
  it("regenerate, edit and switching keep every version, leave their input untouched, and switch back exactly", () => {
    const p0 = deepFreeze([msg("u1"), msg("a1", "assistant"), msg("u2"), msg("a2", "assistant")]);
    const p1 = deepFreeze(fork(p0, 3, [msg("a2b", "assistant")])); // regenerate the last answer
    expect(ids(p1)).toEqual(["u1", "a1", "u2", "a2b"]);
    expect(p1[3]).toMatchObject({ version: 1, versions: [[msg("a2", "assistant")]] });
    const p2 = deepFreeze(fork(p1, 0, [msg("u1b"), msg("a1b", "assistant")])); // edit the first message
    expect(ids(p2)).toEqual(["u1b", "a1b"]);
    expect(versionCount(p2[0])).toBe(2);
    // the old branch is the whole old path from there, its own fork inside it
    expect(p2[0].versions![0]).toEqual(p1);
    const back = selectVersion(p2, 0, 0);
    expect(back).toEqual([{ ...p1[0], versions: [[msg("u1b"), msg("a1b", "assistant")]], version: 0 }, ...p1.slice(1)]);
    const p3 = selectVersion(back, 3, 0); // the first answer to u2, inside the old branch
    expect(ids(p3)).toEqual(["u1", "a1", "u2", "a2"]);
    expect(selectVersion(selectVersion(p3, 3, 1), 0, 1)).toEqual(p2);
    expect(() => selectVersion(p2, 0, 2)).toThrow(/No version 3 here \(there are 2\)/);
    expect(() => selectVersion(p2, 1, 1)).toThrow(/No version 2/);
  });

  it("three answers: the newest is version 3 of 3, and ‹ › moves through them in order", () => {
    let p: StoredMessage[] = [msg("u"), msg("a", "assistant")];
    p = fork(p, 1, [msg("b", "assistant")]);
    p = fork(p, 1, [msg("c", "assistant")]);
    expect([p[1].id, p[1].version, versionCount(p[1])]).toEqual(["c", 2, 3]);
    expect([0, 1, 2].map((k) => selectVersion(p, 1, k)[1].id)).toEqual(["a", "b", "c"]);
    expect(selectVersion(selectVersion(p, 1, 0), 1, 1)[1]).toMatchObject({ id: "b", version: 1 });
  });
});

describe("conversation files with versions", () => {
  it("a file of the format before versions loads unchanged, and is written in the current format", async () => {
    const file = JSON.parse(readFileSync(FIXTURE_V1, "utf8")) as { version: number; conversation: Conversation };
    expect(file.version).toBe(1);
    const dir = tmp();
    mkdirSync(path.join(dir, "conversations"));
    const target = path.join(dir, "conversations", `${file.conversation.id}.json`);
    copyFileSync(FIXTURE_V1, target);
    const store = await ConversationStore.open(dir);
    expect(store.notices).toEqual([]);
    // everything kept: the system prompt, each answer's context, every token with its origin
    expect(store.get(file.conversation.id)).toEqual(file.conversation);
    await store.save(file.conversation.id);
    const saved = JSON.parse(readFileSync(target, "utf8"));
    expect(saved).toEqual({ version: STORE_VERSION, conversation: file.conversation });
  });

  it("refuses, with a reason, versions nested too deep, a message id used twice, a version out of range", () => {
    const base = { id: "c", title: "t", createdAt: 1, updatedAt: 1 };
    let tail: StoredMessage[] = [msg("leaf")];
    for (let i = 0; i < MAX_FORK_DEPTH + 5; i++) tail = [{ ...msg(`m${i}`), versions: [tail], version: 1 }];
    expect(() => parseConversation({ ...base, messages: tail })).toThrow(/nested \d+ deep/);
    const twice = [{ ...msg("x"), versions: [[msg("x")]], version: 1 }];
    expect(() => parseConversation({ ...base, messages: twice })).toThrow(/"x" is used twice/);
    const far = [{ ...msg("x"), versions: [[msg("y")]], version: 4 }];
    expect(() => parseConversation({ ...base, messages: far })).toThrow(/version 5 of only 2/);
  });

  it("a file with a bad version tree is set aside at start; the others load", async () => {
    const dir = tmp();
    const store = await ConversationStore.open(dir);
    const good = await store.create("good");
    const bad = { id: "bad-1", title: "bad", createdAt: 1, updatedAt: 1, messages: [{ ...msg("x"), versions: [[msg("x")]], version: 1 }] };
    writeFileSync(path.join(dir, "conversations", "bad-1.json"), JSON.stringify({ version: 2, conversation: bad }));
    const again = await ConversationStore.open(dir);
    expect(again.list().map((c) => c.id)).toEqual([good.id]);
    expect(again.notices.join("\n")).toMatch(/bad-1\.json could not be read .*used twice.*moved aside/);
  });
});

const pair = await storiesPair();

describe.skipIf(!pair)("versions and branches in the engine (real inference, real cloud)", () => {
  let server: CloudServer;
  let service: TandemService;
  const dataDir = tmp();
  const token = randomBytes(12).toString("hex");

  const start = async () => {
    const s = await TandemService.start({
      dataDir,
      slm: pair!.slm,
      cloud: { kind: "tandem", url: server.url, token },
      tau: 0.5,
      maxTokens: 8,
      contextSize: 512,
      selfDistill: false,
    });
    return s;
  };
  const answer = async (run: () => Promise<unknown>) => {
    const done = new Promise<BridgeEvent>((resolve) => {
      const off = service.subscribe((e) => {
        if (e.type === "answer-end" || e.type === "answer-error") {
          off();
          resolve(e);
        }
      });
    });
    await run();
    const e = await done;
    expect(e.type).toBe("answer-end");
  };

  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair!.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    service = await start();
  });
  afterAll(async () => {
    await service?.close();
    await server?.close();
  });

  it("regenerate, edit, ‹ › and a reply on an old branch; all of it survives a restart", async () => {
    const c = await service.createConversation({});
    await answer(() => service.send({ requestId: "v1", conversationId: c.id, text: "Once upon a time" }));
    await answer(() => service.send({ requestId: "v2", conversationId: c.id, text: "The dog" }));
    await answer(() => service.regenerate({ requestId: "v3", conversationId: c.id }));
    let conv = await service.getConversation({ id: c.id });
    expect(conv.messages[3]).toMatchObject({ version: 1 });
    const regenerated = structuredClone(conv.messages);
    const dog = conv.messages[2];
    await answer(() => service.editAndResend({ requestId: "v4", conversationId: c.id, messageId: dog.id, text: "The cat" }));
    conv = await service.getConversation({ id: c.id });
    expect(conv.messages.map((m) => m.content.slice(0, 7))).toEqual([
      "Once up",
      conv.messages[1].content.slice(0, 7),
      "The cat",
      expect.any(String),
    ]);
    expect(conv.messages[2].versions![0].map((m) => m.id)).toEqual(regenerated.slice(2).map((m) => m.id));
    // back to the old branch: exactly the path it was, every token with its origin
    conv = await service.selectVersion({ conversationId: c.id, messageId: conv.messages[2].id, version: 0 });
    expect(conv.messages.map(({ versions: _v, version: _n, ...m }) => m)).toEqual(
      regenerated.map(({ versions: _v, version: _n, ...m }) => m),
    );
    expect(conv.messages[3].tokens!.every((t) => ["local", "cloud", "fallback"].includes(t.origin))).toBe(true);
    // the next answer reads the active path: the old branch, not the edited one
    await answer(() => service.send({ requestId: "v5", conversationId: c.id, text: "A bird" }));
    conv = await service.getConversation({ id: c.id });
    expect(conv.messages.map((m) => (m.role === "user" ? m.content : "·"))).toEqual([
      "Once upon a time",
      "·",
      "The dog",
      "·",
      "A bird",
      "·",
    ]);
    const before = structuredClone(conv);
    await service.close();
    service = await start();
    expect(await service.getConversation({ id: c.id })).toEqual(before);
    await expect(service.selectVersion({ conversationId: c.id, messageId: before.messages[0].id, version: 1 })).rejects.toThrow(
      /No version 2 here/,
    );
    // export all, import into another data folder, restart that: the same versions and branches
    const file = await service.exportAll({});
    const otherDir = tmp();
    let other = await TandemService.open({ dataDir: otherDir, cloud: { kind: "none", url: "", token: "" }, selfDistill: false });
    await other.importConversations({ content: file.content });
    await other.close();
    other = await TandemService.open({ dataDir: otherDir, cloud: { kind: "none", url: "", token: "" }, selfDistill: false });
    expect(await other.getConversation({ id: c.id })).toEqual(before);
    await other.close();
  }, 120_000);
});
