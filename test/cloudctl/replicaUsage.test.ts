/**
 * Cloud tokens that came on a route stream (the server's SLM replica) count like a call's: in what
 * the cloud has seen of the conversation and in today's use. Before, only calls were charged, so the
 * Cloud panel's "today" count stayed at 0 behind a replica (real engine, real server with a replica).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { BridgeEvent } from "../../shared/bridge.js";
import { TandemService } from "../../electron/engine/service.js";
import { startFaultProxy, type FaultProxy } from "../../bench/faultProxy.js";
import { randomQwenPair, storiesPair } from "../helpers/pair.js";

const pair = (await storiesPair()) ?? (await randomQwenPair());

describe("cloud tokens from a replica's route stream are counted", () => {
  let server: CloudServer;
  let requests: FaultProxy;
  let service: TandemService;
  const token = randomBytes(12).toString("hex");

  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair.llm, replicaModelPath: pair.slm, host: "127.0.0.1", port: 0, token, log: () => {} });
    requests = await startFaultProxy(server.url);
    service = await TandemService.start({
      dataDir: mkdtempSync(path.join(tmpdir(), "tandem-replica-usage-")),
      slm: pair.slm,
      cloud: { kind: "tandem", url: requests.url, token },
      tau: 0.5,
      maxTokens: 40,
      contextSize: 512,
    });
    expect((await service.cloudStatus({})).state).toBe("online");
  });
  afterAll(async () => {
    await service?.close();
    await requests?.close();
    await server?.close();
  });

  it("in the conversation's record and today's use, as the UI is told", async () => {
    const events: BridgeEvent[] = [];
    service.subscribe((e) => events.push(e));
    const c = await service.createConversation({});
    const requestId = randomBytes(6).toString("hex");
    const done = new Promise<BridgeEvent>((resolve) => service.subscribe((e) => e.type === "answer-end" && resolve(e)));
    await service.send({ requestId, conversationId: c.id, text: "Once upon a time" });
    const end = await done;
    if (end.type !== "answer-end") throw new Error("no answer");
    const cloudTokens = end.message.tokens!.filter((t) => t.origin === "cloud").length;
    expect(cloudTokens).toBeGreaterThan(0);
    // the answer went through the replica: route streams, and no per-position call for most tokens
    expect(requests.seen.some((r) => r.path.endsWith("/route"))).toBe(true);
    const seen = await service.cloudSeen({ conversationId: c.id });
    // the tokens the answer took from its streams: its cloud tokens, not what a dropped stream sent ahead
    expect(seen.cloudTokens).toBe(cloudTokens);
    const usage = (await service.cloudControl({})).usageToday;
    expect(usage.cloudTokens).toBe(seen.cloudTokens);
    // the UI heard it: the last cloud-control event carries the same count
    const last = events.filter((e) => e.type === "cloud-control").at(-1);
    expect(last?.type === "cloud-control" && last.control.usageToday.cloudTokens).toBe(seen.cloudTokens);
  });
});
