/**
 * Cloud health without false alarms, with real servers: a call's deadline allows for the cloud's
 * reading of a long paste (a healthy cloud stays online and its tokens stay cloud tokens), a
 * background health check brings the status back online as soon as the cloud answers, and the
 * status names its cause.
 *
 * The LLM a real deployment runs reads a paste far slower than the tiny fixture models do (a 7B model on
 * a CPU: tens of ms a token); the server is therefore reached through a proxy that adds a millisecond
 * per token a request carries, on top of the real server's own reading.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { LocalModel } from "../../inference/localModel.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import type { CloudState } from "../../electron/engine/cloud/peer.js";
import { startFaultProxy, type FaultProxy } from "../../bench/faultProxy.js";

const PASTE = 2000;
const DEADLINE_MS = 1500;
const READ_MS_PER_TOKEN = 1;

describe("cloud health", () => {
  let server: CloudServer;
  let slm: LocalModel;
  const token = randomBytes(12).toString("hex");
  /** how long the server takes to read the paste (measured, so the test shows it exceeds the deadline) */
  let readMs = 0;
  let paste: number[];
  let slow: FaultProxy;

  beforeAll(async () => {
    const f = await ensureFixtures();
    server = await startCloudServer({
      modelPath: f.randA,
      host: "127.0.0.1",
      port: 0,
      token,
      threads: 1,
      contextSize: 4096,
      log: () => {},
    });
    slm = await LocalModel.load(f.randB, { contextSize: 4096 });
    paste = slm.tokenizeText("The quick brown fox jumps over the lazy dog. ".repeat(250)).slice(0, PASTE);
    expect(paste).toHaveLength(PASTE);
    slow = await startFaultProxy(server.url);
    slow.rule = (req) => {
      const tokens = (req.body as { tokens?: unknown } | null)?.tokens;
      return Array.isArray(tokens) && tokens.length > 0 ? { kind: "delay", ms: tokens.length * READ_MS_PER_TOKEN } : { kind: "pass" };
    };
    const probe = new TandemCloudClient({ url: slow.url, token, deadlineMs: 120_000, backgroundSync: false });
    await probe.connect(slm.identity);
    const t0 = performance.now();
    await probe.next(paste);
    readMs = performance.now() - t0;
    await probe.close();
  }, 120_000);
  afterAll(async () => {
    await slow?.close();
    await server?.close();
    await slm?.dispose();
  });

  it("a 2,000-token paste with a 1.5 s deadline: the cloud stays online and its tokens are cloud tokens", async () => {
    expect(
      readMs,
      `the server read ${PASTE} tokens in ${Math.round(readMs)} ms: this test needs that to exceed the deadline`,
    ).toBeGreaterThan(DEADLINE_MS);
    const states: CloudState[] = [];
    const client = new TandemCloudClient({ url: slow.url, token, deadlineMs: DEADLINE_MS, onStateChange: (s) => states.push(s) });
    await client.connect(slm.identity);
    const decoder = new CollaborativeDecoder(slm, new ConfidenceRouter(), client);
    const answer = decoder.generate(paste, { tau: 1, maxTokens: 8 });
    const origins: string[] = [];
    const reasons: string[] = [];
    for await (const e of answer) {
      origins.push(e.origin);
      if (e.fallbackReason) reasons.push(e.fallbackReason);
    }
    expect(reasons).toEqual([]);
    expect(origins).toEqual(Array(8).fill("cloud"));
    expect(states).not.toContain("offline");
    expect(client.state).toBe("online");
    await client.close();
  }, 120_000);

  it("after a failure the status names its cause, and comes back online as soon as the cloud answers, without a call", async () => {
    const proxy: FaultProxy = await startFaultProxy(server.url);
    const details: string[] = [];
    const client = new TandemCloudClient({
      url: proxy.url,
      token,
      deadlineMs: DEADLINE_MS,
      backoffMs: 60_000, // without the health check the client would wait a minute before trying again
      onStateChange: (s, d) => details.push(`${s}${d ? ` ${d}` : ""}`),
    });
    try {
      await client.connect(slm.identity);
      proxy.match = /./;
      proxy.fault = { kind: "reset" };
      await expect(client.next(paste.slice(0, 10))).rejects.toThrow();
      expect(client.state).toBe("offline");
      expect(details.at(-1)).toMatch(/^offline offline: cloud unreachable/);
      proxy.fault = { kind: "pass" };
      const restored = performance.now();
      const calls = proxy.seen.filter((r) => r.path.endsWith("/next")).length;
      while (client.state !== "online" && performance.now() - restored < 5000) await new Promise((r) => setTimeout(r, 50));
      expect(client.state).toBe("online");
      expect(performance.now() - restored).toBeLessThan(2500); // checked every second
      expect(proxy.seen.filter((r) => r.path.endsWith("/next")).length).toBe(calls); // no call was needed
      expect(proxy.seen.at(-1)!.path).toBe("/health");
      // and calls go out again at once, despite the minute-long back-off
      expect((await client.next(paste.slice(0, 10))).tokenId).toBeGreaterThanOrEqual(0);
    } finally {
      await client.close();
      await proxy.close();
    }
  });
});
