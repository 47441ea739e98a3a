/**
 * Following the cloud's SLM replica (/route, decoding/replicaSource.ts) must not change the answer
 * either: the replica client is run against the reference decoder (decoding/reference.ts: no sync,
 * one /next per routed position) on the same prompts, through the fault proxy in front of a real token server that runs the device's SLM
 * beside its LLM, under the same delays and failures: tokens and origins must be identical — greedy,
 * and sampled with a fixed seed (the replica's SLM draws as the device's does, the LLM as a call would).
 *
 * A failure is keyed on the answer position it is about, as in networkHiding.test.ts. A stream answers
 * many positions with one request, so a position's failure is put where the stream carries that
 * position — its line is delayed or the stream breaks there — and on a request that starts at it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter, type Router } from "../../shared/router.js";
import { SAMPLING_PRESETS, type SamplingSettings } from "../../shared/sampling.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { referenceDecode } from "../../electron/engine/decoding/reference.js";
import { LocalModel } from "../../inference/localModel.js";
import { LearnedRouter } from "../../router/learnedRouter.js";
import { bindingOf } from "../../router/file.js";
import { initMlp } from "../../router/mlp.js";
import { startFaultProxy, type Fault, type FaultProxy } from "../../bench/faultProxy.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const TOKEN = "replica-test-token-0123456789";
const MAX = 48;
const DEADLINE = 3000;

/** The fault for requests and stream lines about answer position `position`. */
type Scenario = (position: number, kind: "next" | "append" | "route" | "line", run: RunState) => Fault | Promise<Fault>;
interface RunState {
  restarted: boolean;
  /** a server restart in progress: requests arriving meanwhile wait for it, as they would for a server behind a load balancer */
  restarting?: Promise<void>;
}

/** greedy (no settings, as before sampling), and a sampled answer with a fixed seed */
const MODES: [string, SamplingSettings | undefined][] = [
  ["greedy", undefined],
  ["sampled, Balanced, seed 4321", { ...SAMPLING_PRESETS.balanced, seed: 4321 }],
];

describe.each(MODES)("following the cloud's SLM replica, %s: same tokens and origins as the reference decoder", (_mode, sampling) => {
  let files: PairFiles;
  let slm: LocalModel;
  let server: CloudServer;
  let port: number;
  let proxy: FaultProxy;
  let tau = 0.6;
  let mlp: Router;
  let mlpTau = 0.5;
  const prompts: number[][] = [];
  /** routed positions of each prompt's answer, healthy cloud */
  const routed: number[][] = [];

  const startServer = (p = 0) =>
    startCloudServer({
      modelPath: files.llm,
      replicaModelPath: files.slm,
      replicaSlots: 2,
      host: "127.0.0.1",
      port: p,
      token: TOKEN,
      rateLimit: false,
      log: () => {},
    });

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    slm = await LocalModel.load(files.slm, { contextSize: 512, hiddenState: true });
    server = await startServer();
    port = Number(new URL(server.url).port);
    proxy = await startFaultProxy(server.url);
    for (const text of ["Once upon a time", "The little dog", "Tom and his mom went"]) prompts.push(slm.tokenizeText(text));
    // τ at a quarter of the local answers' positions: some routed, most not, for any pair
    tau = await quantileTau(new ConfidenceRouter(), 0.25);
    // a router network (random weights on the hidden state): replicated by upload
    mlp = new LearnedRouter(initMlp([slm.hiddenSize, 8, 1], 3), { hidden: true, top1: false, dist: false, topK: 0 }, bindingOf(slm));
    mlpTau = await quantileTau(mlp, 0.25);
    for (const p of prompts)
      routed.push((await answer("reference", p, () => ({ kind: "pass" }))).filter((e) => e.origin === "cloud").map((e) => e.index));
  }, 120_000);
  afterAll(async () => {
    await proxy?.close();
    await server?.close();
    await slm?.dispose();
  });

  async function quantileTau(router: Router, q: number): Promise<number> {
    const c: number[] = [];
    for (const p of prompts) {
      await slm.clear();
      for await (const e of new CollaborativeDecoder(slm, router, null).generate(p, { tau: 0, maxTokens: MAX, sampling })) c.push(e.confidence);
    }
    c.sort((a, b) => a - b);
    const k = Math.floor(c.length * q);
    return (c[k - 1]! + c[k]!) / 2;
  }

  async function answer(
    kind: "reference" | "replica",
    prompt: number[],
    scenario: Scenario,
    deadlineMs = DEADLINE,
    router: Router = new ConfidenceRouter(),
  ): Promise<TokenEvent[]> {
    const run: RunState = { restarted: false };
    const positionOf = (body: unknown) => {
      const b = body as { base?: unknown; tokens?: unknown } | undefined;
      return typeof b?.base === "number" && Array.isArray(b.tokens) ? b.base + b.tokens.length - prompt.length : null;
    };
    proxy.rule = (req) => {
      const kindOf = /\/(next|append|route)$/.exec(req.path)?.[1] as "next" | "append" | "route" | undefined;
      const at = positionOf(req.body);
      if (run.restarting) return run.restarting.then(() => ({ kind: "pass" }) as Fault);
      return kindOf && at !== null ? scenario(at, kindOf, run) : { kind: "pass" };
    };
    // a stream's line i is about position start + i; only routed lines stand for a call of the reference decoder
    proxy.lineRule = (req, line, i) => {
      const at = positionOf(req.body);
      const l = line as { routed?: boolean };
      if (at === null || l?.routed !== true) return { kind: "pass" };
      const f = scenario(at + i, "line", run);
      return f instanceof Promise ? { kind: "pass" } : f;
    };
    const client = new TandemCloudClient({
      url: proxy.url,
      token: TOKEN,
      deadlineMs,
      backoffMs: 0,
      backgroundSync: kind === "replica",
      replica: kind === "replica",
    });
    await client.connect(slm.identity);
    try {
      await slm.clear();
      const events: TokenEvent[] = [];
      const t = router instanceof ConfidenceRouter ? tau : mlpTau;
      const decoded =
        kind === "reference"
          ? referenceDecode(slm, router, client, prompt, { tau: t, maxTokens: MAX, sampling })
          : new CollaborativeDecoder(slm, router, client).generate(prompt, { tau: t, maxTokens: MAX, sampling });
      for await (const e of decoded) events.push(e);
      return events;
    } finally {
      await client.close();
      proxy.rule = undefined;
      proxy.lineRule = undefined;
    }
  }

  const view = (events: TokenEvent[]) => events.map((e) => `${e.index}:${e.tokenId}:${e.origin}`);
  const requests = (from: number, kind: string) => proxy.seen.slice(from).filter((r) => r.path.endsWith(`/${kind}`)).length;

  async function expectSame(
    scenario: Scenario,
    router?: Router,
  ): Promise<{ blocking: TokenEvent[][]; routeRequests: number; nextRequests: number }> {
    const blocking: TokenEvent[][] = [];
    let routeRequests = 0;
    let nextRequests = 0;
    for (const p of prompts) {
      const b = await answer("reference", p, scenario, DEADLINE, router);
      const from = proxy.seen.length;
      const r = await answer("replica", p, scenario, DEADLINE, router);
      expect(view(r)).toEqual(view(b));
      expect(r.map((e) => e.text).join("")).toBe(b.map((e) => e.text).join(""));
      routeRequests += requests(from, "route");
      nextRequests += requests(from, "next");
      blocking.push(b);
    }
    expect(unhandled).toEqual([]);
    return { blocking, routeRequests, nextRequests };
  }

  it("the reference answers use the cloud at several positions, not all", () => {
    for (const r of routed) {
      expect(r.length).toBeGreaterThan(1);
      expect(r.length).toBeLessThan(MAX);
    }
  });

  it("no delay: identical, with far fewer requests than routed positions and no per-token calls", async () => {
    const { routeRequests, nextRequests } = await expectSame(() => ({ kind: "pass" }));
    const cloudTokens = routed.flat().length;
    expect(nextRequests).toBe(0);
    expect(routeRequests).toBeGreaterThan(0);
    expect(routeRequests).toBeLessThan(cloudTokens);
  });

  it.each([20, 50])("%i ms round trips: identical, and the answer waits on the network far less", async (ms) => {
    const timed = async (kind: "reference" | "replica") => {
      const t0 = performance.now();
      for (const p of prompts) await answer(kind, p, () => ({ kind: "delay", ms }));
      return performance.now() - t0;
    };
    await expectSame(() => ({ kind: "delay", ms }));
    // not a timing target (the bench measures that): a sanity check with a wide margin, since each
    // blocking answer pays one round trip per routed position and the replica's about one in all
    const blocking = await timed("reference");
    const replica = await timed("replica");
    expect(replica).toBeLessThan(blocking);
  });

  it("random delays of 0–80 ms: identical", async () => {
    let seed = 11;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    await expectSame(() => ({ kind: "delay", ms: Math.floor(rand() * 80) }));
  });

  it("a router network (uploaded to the replica): identical", async () => {
    const from = proxy.seen.length;
    const { routeRequests } = await expectSame(() => ({ kind: "pass" }), mlp);
    expect(routeRequests).toBeGreaterThan(0);
    expect(requests(from, "router")).toBe(prompts.length); // one upload per session
  });

  it.each<[string, Fault]>([
    ["HTTP 500", { kind: "status", status: 500 }],
    ["connection reset", { kind: "reset" }],
    ["truncated JSON", { kind: "garbage" }],
    ["a token outside the vocabulary", { kind: "rewrite", body: (j) => ({ ...j, tokenId: -1 }) }],
  ])("%s at some routed positions: identical, with fallback tokens there", async (_name, fault) => {
    const results: TokenEvent[][] = [];
    for (const [i, p] of prompts.entries()) {
      const failing = new Set(routed[i]!.filter((_, j) => j % 2 === 1));
      const scenario: Scenario = (pos, kind) =>
        (kind === "next" || kind === "route" || kind === "line") && failing.has(pos) ? fault : { kind: "pass" };
      const b = await answer("reference", p, scenario);
      const r = await answer("replica", p, scenario);
      expect(view(r)).toEqual(view(b));
      results.push(b);
    }
    expect(results.flat().some((e) => e.origin === "fallback")).toBe(true);
    expect(unhandled).toEqual([]);
  });

  it("slower than the deadline at one routed position per answer: identical, with a fallback token there", async () => {
    const deadline = 800;
    const results: TokenEvent[][] = [];
    for (const [i, p] of prompts.entries()) {
      const at = routed[i]![1] ?? routed[i]![0]!;
      const scenario: Scenario = (pos, kind) => (kind !== "append" && pos === at ? { kind: "delay", ms: 2500 } : { kind: "pass" });
      const b = await answer("reference", p, scenario, deadline);
      const r = await answer("replica", p, scenario, deadline);
      expect(view(r)).toEqual(view(b));
      results.push(b);
    }
    expect(results.flat().filter((e) => e.origin === "fallback").length).toBeGreaterThan(0);
    expect(unhandled).toEqual([]);
  });

  it("an outage over a span of positions (streams, calls and appends fail): identical, fallback inside, cloud after", async () => {
    const { blocking } = await expectSame((pos) => (pos >= 5 && pos < 15 ? { kind: "status", status: 503 } : { kind: "pass" }));
    const all = blocking.flat();
    expect(all.some((e) => e.origin === "fallback" && e.index >= 5 && e.index < 15)).toBe(true);
    expect(all.some((e) => e.origin === "cloud" && e.index >= 15)).toBe(true);
  });

  it("the server restarted mid-answer (sessions and uploads gone): re-created and re-synced, identical", async () => {
    const restartAt = 12;
    let restarts = 0;
    const { blocking } = await expectSame(async (pos, kind, run) => {
      if (kind !== "line" && pos >= restartAt && !run.restarted) {
        run.restarted = true;
        // the replica client has requests in flight alongside (a stream, appends): those arriving
        // during the restart wait for it rather than meet a closed port the blocking client never meets
        run.restarting = (async () => {
          await server.close();
          server = await startServer(port);
          restarts++;
        })();
        await run.restarting;
        run.restarting = undefined;
      }
      return { kind: "pass" };
    }, mlp);
    expect(restarts).toBeGreaterThan(0);
    expect(blocking.flat().some((e) => e.origin === "cloud" && e.index >= restartAt)).toBe(true);
  });
});
