/**
 * The delta protocol: each cloud call uploads only the tokens the server has not seen, and the
 * server evaluates only those — bytes and work per call follow the delta, not the conversation.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { randomQwenPair, startPair, type RunningPair } from "../helpers/pair.js";

describe("delta protocol", () => {
  let pair: RunningPair;
  beforeAll(async () => {
    pair = await startPair(await randomQwenPair());
  });
  afterAll(async () => pair?.close());

  /** A deterministic token history of length n (arbitrary in-vocabulary IDs). */
  const history = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 1000 + ((i * 7919 + seed * 104729) % 50_000));

  it("evaluates only the new tokens on each call", async () => {
    const client = await pair.client();
    const h = history(60, 1);
    const first = await client.next(h.slice(0, 50));
    expect(first.evaluated).toBe(50);
    // the cloud's token is committed, and two local tokens after it
    const second = await client.next([...h.slice(0, 50), first.tokenId, 17, 18]);
    expect(second.evaluated).toBe(3);
    // nothing new (e.g. a retry): the server re-reads only the last token
    const again = await client.next([...h.slice(0, 50), first.tokenId, 17, 18]);
    expect(again.evaluated).toBe(1);
    expect(again.tokenId).toBe(second.tokenId);
  });

  it("rolls back: a history that parts from the server's copy resends only from the parting point", async () => {
    const client = await pair.client();
    const h = history(40, 2);
    await client.next(h);
    const edited = [...h.slice(0, 30), 4242, 4243];
    const r = await client.next(edited);
    expect(r.evaluated).toBe(2);
    const fresh = await pair.client();
    const reference = await fresh.next(edited);
    expect(r.tokenId).toBe(reference.tokenId);
    expect(r.logprob).toBeCloseTo(reference.logprob!, 4);
  });

  it("token-only calls (logprob: false) give the same tokens, without log-probabilities", async () => {
    const full = await pair.client();
    const lean = await pair.client({ logprob: false });
    const h = history(30, 3);
    for (let n = 20; n < 30; n += 3) {
      const a = await full.next(h.slice(0, n));
      const b = await lean.next(h.slice(0, n));
      expect(b.tokenId).toBe(a.tokenId);
      expect(a.logprob).toBeLessThanOrEqual(0);
      expect(b.logprob).toBeUndefined();
    }
    expect(() => new TandemCloudClient({ url: "http://127.0.0.1:1", logprob: false, topK: 3 })).toThrow(/need logprob/);
  });

  it("bytes uploaded per call grow with the delta, not with the conversation", async () => {
    const perCall = async (conversation: number, delta: number) => {
      const client = await pair.client();
      const h = history(conversation + delta, 3);
      await client.next(h.slice(0, conversation));
      const before = client.stats.bytesUp;
      await client.next(h);
      return client.stats.bytesUp - before;
    };
    const shortConv = await perCall(20, 2);
    const longConv = await perCall(800, 2);
    const bigDelta = await perCall(20, 200);
    // same delta: the same payload up to a few digits of `base`
    expect(Math.abs(longConv - shortConv)).toBeLessThanOrEqual(8);
    expect(longConv).toBeLessThan(80);
    expect(bigDelta).toBeGreaterThan(10 * shortConv);
  });
});
