/**
 * Budgets with real inference and a real cloud server: cloud use stops exactly at the cap (per
 * conversation, per day), the answer goes on locally with origin `fallback` and reason "budget",
 * and a local-only conversation never calls.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { CollaborativeDecoder, type GenerateOptions } from "../../electron/engine/decoder.js";
import type { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { GuardedPeer } from "../../electron/engine/cloudControl/guardedPeer.js";
import { CloudControlStore, DEFAULT_CONTROL } from "../../electron/engine/cloudControl/store.js";
import { randomQwenPair, startPair, storiesPair, type RunningPair } from "../helpers/pair.js";

describe("cloud budgets and local-only, at the decoder", () => {
  let pair: RunningPair | undefined;
  let client: TandemCloudClient;

  beforeAll(async () => {
    pair = await startPair((await storiesPair()) ?? (await randomQwenPair()));
    client = await pair.client();
  });
  afterAll(async () => pair?.close());

  async function answer(store: CloudControlStore, conversation: string, opts: Partial<GenerateOptions> = {}) {
    const peer = new GuardedPeer(client, store.gate(conversation, client.stats.bytesUp));
    const dec = new CollaborativeDecoder(pair!.slm, new ConfidenceRouter(), peer);
    const events: TokenEvent[] = [];
    const callsBefore = client.stats.calls;
    const a = dec.generate(pair!.slm.tokenizeText("Once upon a time"), { tau: 1, maxTokens: 40, ...opts });
    for await (const e of a) events.push(e);
    return { events, calls: client.stats.calls - callsBefore, summary: await a.summary };
  }

  it("a conversation's cap: the cloud writes exactly that many tokens, then every routed position falls back for the budget", async () => {
    const store = CloudControlStore.inMemory();
    await store.setSettings({ ...DEFAULT_CONTROL, budgets: { conversationTokens: 10, dayTokens: null, dayBytesUp: null } });
    const { events } = await answer(store, "c1", { pipeline: false });
    const cloud = events.filter((e) => e.origin === "cloud");
    expect(cloud).toHaveLength(10);
    expect(store.seen("c1").cloudTokens).toBe(10);
    const lastCloud = events.lastIndexOf(cloud.at(-1)!);
    const after = events.slice(lastCloud + 1);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((e) => e.origin === "fallback" && e.fallbackReason!.startsWith("budget:"))).toBe(true);
    expect(after[0]!.fallbackReason).toMatch(/10 tokens is used up; raise it/);
    // the next answer of that conversation makes no call at all
    const again = await answer(store, "c1");
    expect(again.calls).toBe(0);
    expect(again.summary.cloudCalls).toBe(0);
    expect(again.events.every((e) => e.origin === "fallback")).toBe(true);
  });

  it("with pipelined calls and continuations on, what the cloud writes still stops exactly at the cap", async () => {
    const store = CloudControlStore.inMemory();
    await store.setSettings({ ...DEFAULT_CONTROL, budgets: { conversationTokens: 7, dayTokens: null, dayBytesUp: null } });
    const { events } = await answer(store, "c2");
    expect(store.seen("c2").cloudTokens).toBe(7);
    expect(events.filter((e) => e.origin === "cloud").length).toBeLessThanOrEqual(7);
    expect(events.filter((e) => e.origin === "fallback").every((e) => e.fallbackReason!.startsWith("budget:"))).toBe(true);
  });

  it("the day's cap counts every conversation", async () => {
    const store = CloudControlStore.inMemory();
    await store.setSettings({ ...DEFAULT_CONTROL, budgets: { conversationTokens: null, dayTokens: 12, dayBytesUp: null } });
    const a = await answer(store, "d1", { maxTokens: 8, pipeline: false });
    expect(a.events.filter((e) => e.origin === "cloud")).toHaveLength(8);
    const b = await answer(store, "d2", { pipeline: false });
    expect(b.events.filter((e) => e.origin === "cloud")).toHaveLength(4);
    expect(store.usageToday().cloudTokens).toBe(12);
    expect(b.events.at(-1)!.fallbackReason).toMatch(/today's cloud budget of 12 tokens/);
  });

  it("a local-only conversation: no call, no byte, every routed position says local-only", async () => {
    const store = CloudControlStore.inMemory();
    await store.setLocalOnly("l1", true);
    const bytes = client.stats.bytesUp + client.stats.bytesDown;
    const { events, calls, summary } = await answer(store, "l1");
    expect(calls).toBe(0);
    expect(client.stats.bytesUp + client.stats.bytesDown).toBe(bytes);
    expect([summary.cloudTokens, summary.cloudCalls, summary.bytesUp, summary.bytesDown]).toEqual([0, 0, 0, 0]);
    expect(events.every((e) => e.origin === "fallback" && e.fallbackReason!.startsWith("local-only:"))).toBe(true);
  });
});
