/**
 * The engine service over the real engine: the stories260K pair (one thread) and a real HTTP cloud
 * token server. What the bridge promises: streamed deltas, τ mid-answer, stop, regenerate, edit,
 * export with origins, persistence across a restart.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { BridgeEvent } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { inspectorCandidates, TandemService } from "../../electron/engine/service.js";
import { randomQwenPair, storiesPair } from "../helpers/pair.js";
import { noteMissingShared } from "../helpers/shared.js";

const pair = await storiesPair();
noteMissingShared("engine service tests");

describe.skipIf(!pair)("engine service (real engine, real cloud)", () => {
  let server: CloudServer;
  let service: TandemService;
  const events: BridgeEvent[] = [];
  const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-svc-"));
  const token = randomBytes(12).toString("hex");

  const start = async (opts: { paceMs?: number } = {}) => {
    const s = await TandemService.start({
      dataDir,
      slm: pair!.slm,
      cloud: { kind: "tandem", url: server.url, token },
      tau: 0.5,
      maxTokens: 40,
      contextSize: 512,
      ...opts,
    });
    s.subscribe((e) => events.push(e));
    return s;
  };
  const ended = (requestId: string) =>
    new Promise<BridgeEvent>((resolve) => {
      const off = service.subscribe((e) => {
        if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === requestId) {
          off();
          resolve(e);
        }
      });
    });
  const deltas = (requestId: string): TokenEvent[] =>
    events.flatMap((e) => (e.type === "answer-delta" && e.requestId === requestId ? e.tokens : []));

  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair!.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    service = await start();
  });
  afterAll(async () => {
    await service?.close();
    await server?.close();
  });

  it("loads the models and goes online", async () => {
    const snap = await service.snapshot();
    expect(snap.models.slm).toMatchObject({ loaded: true, error: null });
    expect(snap.cloud.state).toBe("online");
    expect(snap.cloud).not.toHaveProperty("token"); // the secret never goes to the UI
  });

  it("send streams token deltas in order, with both origins at τ = 0.5, and the stored answer matches", async () => {
    const c = await service.createConversation({});
    const h = await service.send({ requestId: "s1", conversationId: c.id, text: "Once upon a time" });
    const end = await ended("s1");
    expect(end.type).toBe("answer-end");
    const streamed = deltas("s1");
    expect(streamed.map((t) => t.index)).toEqual(streamed.map((_, i) => i));
    const msg = (await service.getConversation({ id: c.id })).messages.find((m) => m.id === h.messageId)!;
    expect(msg.tokens!.map((t) => t.tokenId)).toEqual(streamed.map((t) => t.tokenId));
    expect(msg.content).toBe(streamed.map((t) => t.text).join(""));
    expect(msg.status).toBe("complete");
    const origins = new Set(streamed.map((t) => t.origin));
    expect(origins).toEqual(new Set(["local", "cloud"]));
    expect(streamed[0].slmTop!.length).toBeGreaterThan(1); // the inspector's candidates
    expect((await service.listConversations({}))[0].title).toBe("Once upon a time");
  });

  it("τ changes mid-answer take effect on the next token", async () => {
    await service.close();
    service = await start({ paceMs: 15 });
    await service.setTau({ tau: 0 });
    const c = await service.createConversation({});
    await service.send({ requestId: "t1", conversationId: c.id, text: "The dog" });
    const end = ended("t1");
    while (deltas("t1").length < 5) await new Promise((r) => setTimeout(r, 5));
    await service.setTau({ tau: 1 });
    await end;
    const toks = deltas("t1");
    const switchAt = toks.findIndex((t) => t.tau === 1);
    expect(switchAt).toBeGreaterThanOrEqual(5);
    expect(toks.slice(0, switchAt).every((t) => t.origin === "local" && t.tau === 0)).toBe(true);
    expect(toks.slice(switchAt).every((t) => t.origin === "cloud")).toBe(true);
    await expect(service.setTau({ tau: 2 })).rejects.toThrow(/τ must be in \[0, 1\]/);
  });

  it("stop ends the answer within a token and keeps the partial answer", async () => {
    await service.setTau({ tau: 0.5 });
    const c = await service.createConversation({});
    const h = await service.send({ requestId: "p1", conversationId: c.id, text: "Lily" });
    while (deltas("p1").length < 3) await new Promise((r) => setTimeout(r, 5));
    await expect(service.send({ requestId: "p2", conversationId: c.id, text: "again" })).rejects.toThrow(/already being generated/);
    expect(await service.stop({ requestId: "p1" })).toEqual({ stopped: true });
    const msg = (await service.getConversation({ id: c.id })).messages.find((m) => m.id === h.messageId)!;
    expect(msg.status).toBe("stopped");
    expect(msg.tokens!.length).toBeLessThan(40);
    expect(msg.tokens!.length).toBeLessThanOrEqual(deltas("p1").length + 1);
    expect(await service.stop({ requestId: "p1" })).toEqual({ stopped: false });
  });

  it("regenerate adds a version of the last answer; edit-and-resend adds a branch; both keep the old ones", async () => {
    const c = await service.createConversation({});
    await service.send({ requestId: "g1", conversationId: c.id, text: "Tim" });
    await ended("g1");
    const first = (await service.getConversation({ id: c.id })).messages[1];
    await service.regenerate({ requestId: "g2", conversationId: c.id });
    await ended("g2");
    let conv = await service.getConversation({ id: c.id });
    expect(conv.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(conv.messages[1].version).toBe(1);
    expect(conv.messages[1].versions!.map((v) => v.map((m) => m.id))).toEqual([[first.id]]);
    const tim = conv.messages[0];
    await service.editAndResend({ requestId: "g3", conversationId: c.id, messageId: tim.id, text: "Sue" });
    await ended("g3");
    conv = await service.getConversation({ id: c.id });
    expect(conv.messages.map((m) => [m.role, m.role === "user" ? m.content : m.status])).toEqual([
      ["user", "Sue"],
      ["assistant", "complete"],
    ]);
    // the old branch, its two answers inside it
    const [old] = conv.messages[0].versions!;
    expect(old.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(old[0]).toMatchObject({ id: tim.id, content: "Tim" });
    expect(old[1].versions!.map((v) => v[0].id)).toEqual([first.id]);
    expect(conv.messages[0]).toMatchObject({ version: 1 });
  });

  it("exports JSON with every token's origin, and Markdown", async () => {
    const [meta] = await service.listConversations({});
    const json = JSON.parse((await service.exportConversation({ id: meta.id, format: "json" })).content);
    const tokens: TokenEvent[] = json.conversation.messages.flatMap((m: { tokens?: TokenEvent[] }) => m.tokens ?? []);
    expect(tokens.length).toBeGreaterThan(0);
    expect(tokens.every((t) => ["local", "cloud", "fallback"].includes(t.origin) && typeof t.confidence === "number")).toBe(true);
    const md = await service.exportConversation({ id: meta.id, format: "markdown" });
    expect(md.filename).toMatch(/\.md$/);
    expect(md.content).toMatch(/## You[\s\S]*## Tandem[\s\S]*tokens · \d+ from the cloud/);
  });

  it("conversations survive a restart of the service", async () => {
    const before = await service.listConversations({});
    await service.close();
    service = await start();
    expect(await service.listConversations({})).toEqual(before);
  });

  it("a corrupt model file is a clear error in the model status; the loaded model keeps working", async () => {
    const { ensureFixtures } = await import("../../models/fixtures.js");
    const f = await ensureFixtures();
    const status = await service.openLocalModel({ path: f.notModel });
    expect(status.slm.error).toMatch(/GGUF|not a model|magic/i);
    expect(status.slm.loaded).toBe(true);
  });

  it("a model whose vocabulary the cloud refuses: a clear error, the cloud goes offline, the chat goes on locally", async () => {
    const { ensureFixtures } = await import("../../models/fixtures.js");
    const f = await ensureFixtures();
    const status = await service.openLocalModel({ path: f.randGpt2 });
    expect(status.slm).toMatchObject({ loaded: true, error: null });
    const cloud = await service.cloudStatus({});
    expect(cloud.state).toBe("offline");
    expect(cloud.detail).toMatch(/vocabulary/i);
    const c = await service.createConversation({});
    await service.setTau({ tau: 1 });
    await service.send({ requestId: "v1", conversationId: c.id, text: "Hello" });
    await ended("v1");
    const toks = deltas("v1");
    expect(toks.length).toBeGreaterThan(0);
    expect(toks.every((t) => t.origin === "fallback")).toBe(true); // τ = 1 wants the cloud; there is none
  });
});

describe("inspector candidates by vocabulary size", () => {
  it("are off by default on a 152k vocabulary (a probability map per token) and on for small ones", async () => {
    expect([inspectorCandidates(512), inspectorCandidates(151_936)]).toEqual([5, 0]);
    const { slm } = await randomQwenPair();
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-svc-qwen-"));
    const s = await TandemService.start({ dataDir, slm, tau: 0, maxTokens: 3, contextSize: 256, selfDistill: false });
    try {
      const got: TokenEvent[] = [];
      const done = new Promise<void>((resolve) =>
        s.subscribe((e) => {
          if (e.type === "answer-delta") got.push(...e.tokens);
          if (e.type === "answer-end" || e.type === "answer-error") resolve();
        }),
      );
      const c = await s.createConversation({});
      await s.send({ requestId: "q", conversationId: c.id, text: "Hello" });
      await done;
      expect(got.length).toBeGreaterThan(0);
      expect(got.every((t) => t.slmTop === undefined)).toBe(true);
    } finally {
      await s.close();
    }
  }, 120_000);
});
