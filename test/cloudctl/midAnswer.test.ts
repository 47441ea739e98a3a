/**
 * The cloud controls are read live, not when an answer starts: turning a conversation local-only while
 * its answer streams stops what it sends at once (real engine, real cloud server behind a counting proxy).
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

const pair = (await storiesPair()) ?? (await randomQwenPair());

/** An answer's streamed tokens as they come, and its end. */
function track(service: TandemService, requestId: string) {
  const streamed: TokenEvent[] = [];
  let ended: (e: BridgeEvent) => void;
  const end = new Promise<BridgeEvent>((r) => (ended = r));
  const off = service.subscribe((e) => {
    if (e.type === "answer-delta" && e.requestId === requestId) streamed.push(...e.tokens);
    if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === requestId) {
      off();
      ended(e);
    }
  });
  return { requestId, streamed, end };
}

describe("cloud controls changed in the middle of an answer", () => {
  let server: CloudServer;
  let requests: FaultProxy;
  let service: TandemService;
  const token = randomBytes(12).toString("hex");

  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    requests = await startFaultProxy(server.url);
    service = await TandemService.start({
      dataDir: mkdtempSync(path.join(tmpdir(), "tandem-midanswer-")),
      slm: pair.slm,
      cloud: { kind: "tandem", url: requests.url, token },
      tau: 1, // every position routed to the cloud
      maxTokens: 60,
      paceMs: 30,
      contextSize: 512,
      selfDistill: false,
    });
    expect((await service.cloudStatus({})).state).toBe("online");
  }, 90_000);
  afterAll(async () => {
    await service?.close();
    await requests?.close();
    await server?.close();
  });

  it("local-only set while the answer streams: no request after it, the rest of the answer falls back", async () => {
    const c = await service.createConversation({});
    const { requestId, streamed, end } = track(service, "mid-1");
    await service.send({ requestId, conversationId: c.id, text: "Once upon a time" });
    while (streamed.filter((t) => t.origin === "cloud").length < 3) await new Promise((r) => setTimeout(r, 5));
    await service.setLocalOnly({ conversationId: c.id, localOnly: true });
    const seenAtSwitch = requests.seen.length;
    const tokensAtSwitch = streamed.length;
    const last = await end;
    expect(last.type).toBe("answer-end");
    const tokens = (last as Extract<BridgeEvent, { type: "answer-end" }>).message.tokens!;
    expect(tokens.length).toBeGreaterThan(tokensAtSwitch + 10); // the answer went on well past the switch
    // a call already on the wire may land; nothing is sent after it
    expect(requests.seen.length - seenAtSwitch).toBeLessThanOrEqual(1);
    const after = tokens.slice(tokensAtSwitch + 2);
    expect(after.every((t) => t.origin === "fallback" && t.fallbackReason?.startsWith("local-only"))).toBe(true);
  }, 60_000);

  it("a budget lowered while the answer streams: the cloud is not called past it", async () => {
    const c = await service.createConversation({});
    const { requestId, streamed, end } = track(service, "mid-2");
    await service.send({ requestId, conversationId: c.id, text: "Once upon a time" });
    while (streamed.filter((t) => t.origin === "cloud").length < 3) await new Promise((r) => setTimeout(r, 5));
    await service.updateCloudControl({ budgets: { conversationTokens: 0 } });
    const seenAtSwitch = requests.seen.length;
    const tokensAtSwitch = streamed.length;
    const last = await end;
    await service.updateCloudControl({ budgets: { conversationTokens: null } });
    expect(last.type).toBe("answer-end");
    const tokens = (last as Extract<BridgeEvent, { type: "answer-end" }>).message.tokens!;
    expect(tokens.length).toBeGreaterThan(tokensAtSwitch + 10);
    expect(requests.seen.length - seenAtSwitch).toBeLessThanOrEqual(1);
    const after = tokens.slice(tokensAtSwitch + 2);
    expect(after.every((t) => t.origin === "fallback" && t.fallbackReason?.startsWith("budget"))).toBe(true);
  }, 60_000);
});
