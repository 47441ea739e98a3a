/**
 * Closing the cloud client is final: a call still in flight that finds its session deleted must not
 * open a new one (it would hold one of the server's session slots until idle eviction — the bench hit
 * the per-client cap this way when the decoder left a pipelined call behind at the end of an answer).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { CloudCallError } from "../../electron/engine/cloud/peer.js";
import { randomQwenPair, startPair, type RunningPair } from "../helpers/pair.js";
import { startFaultProxy, type FaultProxy } from "../../bench/faultProxy.js";

describe("closing the cloud client", () => {
  let pair: RunningPair;
  let proxy: FaultProxy;
  beforeAll(async () => {
    pair = await startPair(await randomQwenPair());
    proxy = await startFaultProxy(pair.server.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await pair?.close();
  });

  it("leaves no session behind when a call in flight finds its session deleted", async () => {
    const before = pair.server.stats().sessions;
    const client = new TandemCloudClient({ url: proxy.url, token: pair.token, deadlineMs: 5000 });
    await client.connect(pair.slm.identity);
    expect(pair.server.stats().sessions).toBe(before + 1);
    // the call reaches the server only after close() has deleted the session
    proxy.match = /\/next$/;
    proxy.fault = { kind: "delay", ms: 150 };
    const call = client.next([1000, 1001, 1002, 1003]);
    await new Promise((r) => setTimeout(r, 20));
    await client.close();
    const outcome = await call.then(
      () => "answered",
      (e: unknown) => (e instanceof CloudCallError ? e.reason : String(e)),
    );
    expect(outcome).toBe("offline"); // "the cloud client was closed", not a fresh session
    await new Promise((r) => setTimeout(r, 50));
    expect(pair.server.stats().sessions).toBe(before);
    await expect(client.next([1, 2])).rejects.toThrow(/closed/);
  });
});
