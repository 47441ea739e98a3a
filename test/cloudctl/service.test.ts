/**
 * The cloud controls through the engine service, with real inference and a real cloud server behind
 * proxies that count what passes: a local-only conversation sends nothing, what the cloud has seen is
 * recorded, Forget leaves no session on the server (deleting a conversation too), budgets and a target
 * share hold, and the share τ would give is known from the calibration.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { BridgeEvent } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { TandemService } from "../../electron/engine/service.js";
import { startFaultProxy, type FaultProxy } from "../../bench/faultProxy.js";
import { randomQwenPair, storiesPair } from "../helpers/pair.js";
import { startCountingProxy, type CountingProxy } from "./countingProxy.js";

const pair = (await storiesPair()) ?? (await randomQwenPair());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("cloud controls in the engine service (real engine, real cloud)", () => {
  let server: CloudServer;
  let requests: FaultProxy;
  let wire: CountingProxy;
  let service: TandemService;
  const events: BridgeEvent[] = [];
  const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-cloudctl-"));
  const token = randomBytes(12).toString("hex");

  const start = () =>
    TandemService.start({
      dataDir,
      slm: pair.slm,
      cloud: { kind: "tandem", url: wire.url, token },
      tau: 1,
      maxTokens: 30,
      contextSize: 512,
    });

  /** Sends a message and waits for the answer's end: its tokens. */
  async function answer(conversationId: string, text = "Once upon a time"): Promise<TokenEvent[]> {
    const requestId = randomBytes(6).toString("hex");
    const done = new Promise<BridgeEvent>((resolve) => {
      const off = service.subscribe((e) => {
        if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === requestId) {
          off();
          resolve(e);
        }
      });
    });
    await service.send({ requestId, conversationId, text });
    const end = await done;
    if (end.type !== "answer-end") throw new Error(`the answer failed: ${JSON.stringify(end)}`);
    return end.message.tokens!;
  }

  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    requests = await startFaultProxy(server.url);
    wire = await startCountingProxy(requests.url);
    service = await start();
    service.subscribe((e) => events.push(e));
    expect((await service.cloudStatus({})).state).toBe("online");
  });
  afterAll(async () => {
    await service?.close();
    await wire?.close();
    await requests?.close();
    await server?.close();
  });

  it("a local-only conversation makes no request and sends no byte, at τ = 1; its routed tokens say local-only", async () => {
    const c = await service.createConversation({});
    expect((await service.setLocalOnly({ conversationId: c.id, localOnly: true })).localOnly).toBe(true);
    await sleep(200); // the client's own traffic (the session opened at start) is over
    const before = { requests: requests.seen.length, up: wire.bytesUp, down: wire.bytesDown, connections: wire.connections };
    const tokens = await answer(c.id);
    await answer(c.id, "And then?");
    await sleep(300); // a background sync would have gone out by now
    expect(requests.seen.length - before.requests).toBe(0);
    expect([wire.bytesUp - before.up, wire.bytesDown - before.down, wire.connections - before.connections]).toEqual([0, 0, 0]);
    expect(tokens.length).toBeGreaterThan(0);
    expect(tokens.every((t) => t.origin === "fallback" && t.fallbackReason!.startsWith("local-only:"))).toBe(true);
    const seen = await service.cloudSeen({ conversationId: c.id });
    expect(seen).toMatchObject({ localOnly: true, tokensUp: 0, cloudTokens: 0, bytesUp: 0, bytesDown: 0, sessionId: null });
  });

  it("local-only as the default: a new conversation starts local-only", async () => {
    await service.updateCloudControl({ localOnlyDefault: true });
    const c = await service.createConversation({});
    expect((await service.cloudSeen({ conversationId: c.id })).localOnly).toBe(true);
    await service.updateCloudControl({ localOnlyDefault: false });
    const d = await service.createConversation({});
    expect((await service.cloudSeen({ conversationId: d.id })).localOnly).toBe(false);
  });

  it("what the cloud has seen is recorded, and Forget leaves no session on the server", async () => {
    const c = await service.createConversation({});
    const tokens = await answer(c.id);
    const cloudTokens = tokens.filter((t) => t.origin === "cloud").length;
    expect(cloudTokens).toBeGreaterThan(0);
    const seen = await service.cloudSeen({ conversationId: c.id });
    expect(seen.tokensUp).toBeGreaterThan(0);
    expect(seen.cloudTokens).toBeGreaterThanOrEqual(cloudTokens); // what it wrote, continuations included
    expect(seen.bytesUp).toBeGreaterThan(0);
    expect(seen.bytesDown).toBeGreaterThan(0);
    expect(seen.model).toBe(server.identity.name);
    expect(seen.server).toBe(wire.url);
    expect(seen.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(server.stats().sessions).toBe(1);
    expect(server.memory().tokensHeld).toBeGreaterThan(0);

    const forgotten = await service.forgetCloud({ conversationId: c.id });
    expect(forgotten.sessionId).toBeNull();
    expect(forgotten.forgottenAt).toBeGreaterThan(0);
    expect(requests.seen.some((r) => r.path === `/v1/sessions/${seen.sessionId}/forget`)).toBe(true);
    expect(server.stats().sessions).toBe(0);
    expect(server.memory().tokensHeld).toBe(0);

    // the next answer opens a new session; deleting the conversation forgets that one too
    await answer(c.id, "What next?");
    const again = await service.cloudSeen({ conversationId: c.id });
    expect(again.sessionId).not.toBe(seen.sessionId);
    expect(server.stats().sessions).toBe(1);
    await service.deleteConversation({ id: c.id });
    expect(server.stats().sessions).toBe(0);
    await expect(service.cloudSeen({ conversationId: c.id })).rejects.toThrow();
  });

  it("the day's use counts every conversation's cloud tokens and bytes, whatever came before", async () => {
    const day0 = (await service.cloudControl({})).usageToday;
    const a = await service.createConversation({});
    await answer(a.id);
    await service.forgetCloud({ conversationId: a.id });
    const b = await service.createConversation({});
    await service.setLocalOnly({ conversationId: b.id, localOnly: true });
    await answer(b.id);
    await service.updateCloudControl({ budgets: { conversationTokens: 3, dayTokens: null, dayBytesUp: null } });
    const c = await service.createConversation({});
    await answer(c.id);
    await service.updateCloudControl({ budgets: { conversationTokens: null } });
    const day1 = (await service.cloudControl({})).usageToday;
    const all = await Promise.all([a, b, c].map((x) => service.cloudSeen({ conversationId: x.id })));
    expect(day1.cloudTokens - day0.cloudTokens).toBe(all.reduce((n, s) => n + s.cloudTokens, 0));
    expect(all[2]!.cloudTokens).toBe(3);
  });

  it("a conversation budget: the cloud writes exactly up to the cap, then the answer goes on locally for the budget", async () => {
    await service.updateCloudControl({ budgets: { conversationTokens: 6 } });
    try {
      const c = await service.createConversation({});
      const usedBefore = (await service.cloudControl({})).usageToday;
      const tokens = await answer(c.id);
      const seen = await service.cloudSeen({ conversationId: c.id });
      expect(seen.cloudTokens).toBe(6);
      const usedAfter = (await service.cloudControl({})).usageToday;
      expect(usedAfter.cloudTokens - usedBefore.cloudTokens).toBe(6); // the day's count follows the conversation's
      expect(usedAfter.bytesUp - usedBefore.bytesUp).toBe(seen.bytesUp);
      expect(tokens.filter((t) => t.origin === "cloud").length).toBeLessThanOrEqual(6);
      const fallback = tokens.filter((t) => t.origin === "fallback");
      expect(fallback.length).toBeGreaterThan(0);
      expect(
        fallback.every((t) => /^budget: this conversation's cloud budget of 6 tokens is used up; raise it/.test(t.fallbackReason!)),
      ).toBe(true);
      expect((await service.cloudControl({})).usageToday.cloudTokens).toBeGreaterThanOrEqual(6);
    } finally {
      await service.updateCloudControl({ budgets: { conversationTokens: null } });
    }
  });

  it("a target share steers τ; the share τ would give is known from the calibration; an explicit τ turns the share off", async () => {
    const view = await service.updateCloudControl({ targetShare: 0.2 });
    expect(view.targetShare).toBe(0.2);
    expect(view.calibration.scores).toBeGreaterThan(0); // from the answers so far
    expect(view.calibration.tauForTarget).not.toBeNull();
    const c = await service.createConversation({});
    const tokens = await answer(c.id);
    const routed = tokens.filter((t) => t.confidence < t.tau).length;
    expect(Math.abs(routed - 0.2 * tokens.length)).toBeLessThanOrEqual(1.5);
    expect(events.some((e) => e.type === "cloud-control")).toBe(true);
    await service.setTau({ tau: 0.4 });
    const after = await service.cloudControl({});
    expect(after.targetShare).toBeNull();
    expect(after.calibration.shareAtTau).not.toBeNull();
  });

  it("the controls and the calibration are kept across a restart", async () => {
    await service.updateCloudControl({ targetShare: 0.1, budgets: { dayTokens: 1000 } });
    const before = await service.cloudControl({});
    await service.close();
    service = await start();
    const after = await service.cloudControl({});
    expect(after.targetShare).toBe(0.1);
    expect(after.budgets.dayTokens).toBe(1000);
    expect(after.calibration.scores).toBe(before.calibration.scores);
    await expect(service.updateCloudControl({ targetShare: 2 } as never)).rejects.toThrow(/Invalid cloud controls/);
    expect((await service.cloudControl({})).targetShare).toBe(0.1);
  });
});
