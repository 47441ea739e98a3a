/**
 * Hiding the network must not change the answer. The hiding client (background /append sync, the SLM
 * running ahead while a call is in flight, rolled back when the cloud disagrees, pipelined calls,
 * verified continuations), and each of those ways alone, is run against the reference decoder
 * (decoding/reference.ts: no sync, idle wait, one token per call) on the same prompts, through a fault proxy on loopback in front of a real cloud token server, under the
 * same induced delays and failures: tokens, origins and text must be identical, for greedy decoding
 * and for a sampled answer (Balanced, a fixed seed: every token is drawn with the number keyed by its
 * position, so the same history draws the same token whoever asks).
 *
 * Failures are keyed on the answer position a request is about, not on time or request count, so both
 * clients meet them at the same tokens (and back-off is off, since its window is measured in ms — the
 * blocking client's own output under back-off depends on how fast it runs). A continuation answers
 * several positions with one request, so a client using them makes no request at some positions where
 * the blocking client does: where requests fail, both clients ask for the same continuations (what
 * is compared there is the sync and the run-ahead); where none fails, the blocking client asks for none.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { TokenEvent } from "../../shared/events.js";
import { PROTOCOL_LIMITS } from "../../shared/protocol.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { SAMPLING_PRESETS, type SamplingSettings } from "../../shared/sampling.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { CollaborativeDecoder, type GenerateOptions } from "../../electron/engine/decoder.js";
import { referenceDecode } from "../../electron/engine/decoding/reference.js";
import { ContinuationPolicy } from "../../electron/engine/cloudPolicy.js";
import { LocalModel } from "../../inference/localModel.js";
import { startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from "../../bench/faultProxy.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const TOKEN = "hiding-test-token-0123456789";
const MAX = 40;
const TAU = 0.6;
// generous, so a loaded CI machine never times out a healthy call (that would be a fault nobody
// induced, met by one client and not the other); the deadline scenario sets its own
const DEADLINE = 3000;
const DRAFT = 4;

/** A scenario decides each request's fault from the answer position it asks about (or syncs up to). */
type Scenario = (position: number, req: ProxiedRequest, run: RunState) => Fault | Promise<Fault>;
interface RunState {
  restarted: boolean;
  /** a server restart in progress: requests arriving meanwhile wait for it, as they would for a server behind a load balancer */
  restarting?: Promise<void>;
}
/** One way of hiding the network alone: the decoder's options and whether the client syncs in the background. */
interface Strategy {
  options: Partial<GenerateOptions>;
  sync: boolean;
}
const ALONE: [string, Strategy][] = [
  [
    "a call per routed position (the decoder with everything off)",
    { options: { speculate: 0, continuation: 0, pipeline: false }, sync: false },
  ],
  ["background sync", { options: { speculate: 0, continuation: 0, pipeline: false }, sync: true }],
  ["run-ahead with rollback", { options: { speculate: 8, continuation: 0, pipeline: false }, sync: false }],
  ["pipelined calls", { options: { speculate: 8, continuation: 0, pipeline: true }, sync: false }],
  ["continuations", { options: { speculate: 0, continuation: DRAFT, pipeline: false }, sync: false }],
];

/** greedy (no settings, as before sampling), and a sampled answer with a fixed seed */
const MODES: [string, SamplingSettings | undefined][] = [
  ["greedy", undefined],
  ["sampled, Balanced, seed 1234", { ...SAMPLING_PRESETS.balanced, seed: 1234 }],
];

describe.each(MODES)("network hiding, %s: same tokens and origins as the reference decoder", (_mode, sampling) => {
  let files: PairFiles;
  let slm: LocalModel;
  let server: CloudServer;
  let port: number;
  let proxy: FaultProxy;
  const prompts: number[][] = [];
  /** routed positions of each prompt's answer with a healthy cloud */
  const routed: number[][] = [];
  /** positions where a client taking continuations calls the cloud, healthy cloud */
  const calls: number[][] = [];
  let rollbacks = 0;

  const startServer = (p = 0) => startCloudServer({ modelPath: files.llm, host: "127.0.0.1", port: p, token: TOKEN, rateLimit: false });

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    slm = await LocalModel.load(files.slm, { contextSize: 512 });
    const rollback = slm.rollback.bind(slm);
    slm.rollback = async (n: number) => {
      rollbacks++;
      return rollback(n);
    };
    server = await startServer();
    port = Number(new URL(server.url).port);
    proxy = await startFaultProxy(server.url);
    for (const text of ["Once upon a time", "The little dog", "Tom and his mom went"]) prompts.push(slm.tokenizeText(text));
    for (const p of prompts) {
      const events = await answer("reference", p, () => ({ kind: "pass" }));
      routed.push(events.filter((e) => e.origin === "cloud").map((e) => e.index));
      // where a client that takes continuations makes its calls (the rest come with a continuation)
      const withDraft = await answer("reference", p, () => ({ kind: "pass" }), DEADLINE, DRAFT);
      calls.push(withDraft.filter((e) => e.cloudLatencyMs !== null).map((e) => e.index));
    }
  }, 120_000);
  afterAll(async () => {
    await proxy?.close();
    await server?.close();
    await slm?.dispose();
  });

  /** An answer by the reference decoder (`draft`: continuations, as the decoder takes them) or the hiding decoder (`alone`: one way only). */
  async function answer(
    kind: "reference" | "hiding",
    prompt: number[],
    scenario: Scenario,
    deadlineMs = DEADLINE,
    draft = kind === "hiding" ? DRAFT : 0,
    pipeline = true,
    alone?: Strategy,
  ): Promise<TokenEvent[]> {
    const state: RunState = { restarted: false };
    proxy.rule = (req) => {
      const b = req.body as { base?: unknown; tokens?: unknown } | undefined;
      if (!/\/(next|append)$/.test(req.path) || typeof b?.base !== "number" || !Array.isArray(b.tokens)) return { kind: "pass" };
      return scenario(b.base + b.tokens.length - prompt.length, req, state);
    };
    const client = new TandemCloudClient({
      url: proxy.url,
      token: TOKEN,
      deadlineMs,
      backoffMs: 0,
      backgroundSync: alone ? alone.sync : kind === "hiding",
    });
    // where a call asks for a continuation must not depend on timings (ContinuationPolicy learns what one
    // costs from them, which differ from run to run on a loaded machine): inside clusters only
    client.learnt.continuations = new ContinuationPolicy(-1);
    await client.connect(slm.identity);
    try {
      const events: TokenEvent[] = [];
      if (kind === "reference") {
        for await (const e of referenceDecode(slm, new ConfidenceRouter(), client, prompt, {
          tau: TAU,
          maxTokens: MAX,
          continuation: draft,
          sampling,
        }))
          events.push(e);
        return events;
      }
      const dec = new CollaborativeDecoder(slm, new ConfidenceRouter(), client);
      for await (const e of dec.generate(prompt, {
        tau: TAU,
        maxTokens: MAX,
        speculate: 8,
        continuation: draft,
        pipeline,
        sampling,
        ...alone?.options,
      }))
        events.push(e);
      return events;
    } finally {
      await client.close();
      proxy.rule = undefined;
    }
  }

  const view = (events: TokenEvent[]) => events.map((e) => `${e.index}:${e.tokenId}:${e.origin}`);

  /** Runs the reference and the hiding decoder on every prompt; returns the reference's events for further checks. */
  async function expectSame(scenario: Scenario, opts: { failures?: boolean; pipeline?: boolean } = {}): Promise<TokenEvent[][]> {
    const out: TokenEvent[][] = [];
    for (const p of prompts) {
      if (opts.failures) {
        out.push(await sameUnderFailures(p, scenario));
        continue;
      }
      const blocking = await answer("reference", p, scenario, DEADLINE, 0);
      const appendsBefore = proxy.seen.filter((r) => r.path.endsWith("/append")).length;
      const hiding = await answer("hiding", p, scenario, DEADLINE, DRAFT, opts.pipeline ?? true);
      expect(view(hiding)).toEqual(view(blocking));
      expect(hiding.map((e) => e.text).join("")).toBe(blocking.map((e) => e.text).join(""));
      // the hiding client really synced in the background
      expect(proxy.seen.filter((r) => r.path.endsWith("/append")).length).toBeGreaterThan(appendsBefore);
      out.push(blocking);
    }
    expect(unhandled).toEqual([]);
    return out;
  }

  /**
   * Where requests fail, a client must meet the failures at the same positions as the one it is
   * compared with: a continuation answers positions without a request, a pipelined call asks about a
   * position early (the same position the blocking client asks about, once the guesses stand). So the
   * sync, the run-ahead and the pipelined calls are compared with the blocking client without
   * continuations on either side, and the continuations with them on both sides, pipelining off.
   * Returns the first blocking answer.
   */
  async function sameUnderFailures(p: number[], scenario: Scenario, deadline = DEADLINE): Promise<TokenEvent[]> {
    const blocking = await answer("reference", p, scenario, deadline, 0);
    const hiding = await answer("hiding", p, scenario, deadline, 0, true);
    expect(view(hiding)).toEqual(view(blocking));
    const blockingDraft = await answer("reference", p, scenario, deadline, DRAFT);
    const hidingDraft = await answer("hiding", p, scenario, deadline, DRAFT, false);
    expect(view(hidingDraft)).toEqual(view(blockingDraft));
    return blocking;
  }

  it("the reference answers use the cloud at some positions, not all", () => {
    for (const r of routed) {
      expect(r.length).toBeGreaterThan(0);
      expect(r.length).toBeLessThan(MAX);
    }
  });

  it("no delay: identical, and the SLM ran ahead and was rolled back where the cloud disagreed", async () => {
    const before = rollbacks;
    await expectSame(() => ({ kind: "pass" }));
    expect(rollbacks).toBeGreaterThan(before);
  });

  it("pipelined calls: routed positions of the guessed text are asked about while the call before them is in flight", async () => {
    let alongside = 0;
    for (const p of prompts) {
      const from = proxy.seen.length;
      const blocking = await answer("reference", p, () => ({ kind: "delay", ms: 20 }), DEADLINE, 0);
      expect(
        proxy.seen
          .slice(from)
          .filter((r) => r.path.endsWith("/next"))
          .every((r) => r.alongside === 0),
      ).toBe(true);
      const mid = proxy.seen.length;
      const hiding = await answer("hiding", p, () => ({ kind: "delay", ms: 20 }), DEADLINE, 0, true);
      expect(view(hiding)).toEqual(view(blocking));
      alongside += proxy.seen.slice(mid).filter((r) => r.path.endsWith("/next") && r.alongside > 0).length;
    }
    expect(alongside).toBeGreaterThan(0);
  });

  it("continuations: some cloud tokens come without a call of their own, so fewer calls for the same answer", async () => {
    const nextCalls = async (kind: "reference" | "hiding", p: number[]) => {
      const from = proxy.seen.length;
      // no pipelined calls here: each /next request is then a call whose answer is used
      const events = await answer(kind, p, () => ({ kind: "pass" }), DEADLINE, kind === "hiding" ? DRAFT : 0, false);
      return { events, calls: proxy.seen.slice(from).filter((r) => r.path.endsWith("/next")).length };
    };
    let fromDraft = 0;
    let blockingCalls = 0;
    let hidingCalls = 0;
    for (const p of prompts) {
      const b = await nextCalls("reference", p);
      const h = await nextCalls("hiding", p);
      expect(view(h.events)).toEqual(view(b.events));
      fromDraft += h.events.filter((e) => e.origin === "cloud" && e.cloud?.fromDraft).length;
      expect(h.events.filter((e) => e.cloud?.fromDraft).every((e) => e.cloudLatencyMs === null)).toBe(true);
      blockingCalls += b.calls;
      hidingCalls += h.calls;
    }
    expect(fromDraft).toBeGreaterThan(0);
    expect(hidingCalls).toBe(blockingCalls - fromDraft);
  });

  it("with background sync a call carries only the last few tokens; the blocking client's carry the whole gap", async () => {
    const deltas = async (kind: "reference" | "hiding") => {
      const from = proxy.seen.length;
      // no continuations here: both clients call at the same positions, only what a call carries differs
      await answer(kind, prompts[0]!, () => ({ kind: "delay", ms: 20 }), DEADLINE, 0, false);
      return proxy.seen
        .slice(from)
        .filter((r) => r.path.endsWith("/next"))
        .map((r) => (r.body as { tokens: number[] }).tokens.length);
    };
    const blocking = await deltas("reference");
    const hiding = await deltas("hiding");
    expect(hiding.length).toBe(blocking.length);
    const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    expect(total(hiding)).toBeLessThan(total(blocking));
    // the first call carries the prompt for the blocking client; the prompt was synced before it otherwise
    expect(blocking[0]).toBeGreaterThanOrEqual(prompts[0]!.length);
    expect(hiding[0]).toBeLessThan(prompts[0]!.length);
  });

  it.each(ALONE)("each way alone, 20 ms on every request: %s gives the reference's tokens, origins and text", async (_name, alone) => {
    for (const p of prompts) {
      const reference = await answer("reference", p, () => ({ kind: "delay", ms: 20 }), DEADLINE, 0);
      const one = await answer("hiding", p, () => ({ kind: "delay", ms: 20 }), DEADLINE, 0, false, alone);
      expect(view(one)).toEqual(view(reference));
      expect(one.map((e) => e.text).join("")).toBe(reference.map((e) => e.text).join(""));
    }
    expect(unhandled).toEqual([]);
  });

  it.each([20, 50])("%i ms on every request: identical", async (ms) => {
    await expectSame(() => ({ kind: "delay", ms }));
  });

  it("random delays of 0–80 ms (requests overtake each other): identical", async () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    await expectSame(() => ({ kind: "delay", ms: Math.floor(rand() * 80) }));
  });

  it.each<[string, Fault]>([
    ["HTTP 500", { kind: "status", status: 500 }],
    ["connection reset", { kind: "reset" }],
    ["truncated JSON", { kind: "garbage" }],
    ["a reply for another session (wrong length)", { kind: "rewrite", body: (j) => ({ ...j, length: 1 }) }],
    [
      "a continuation longer than asked for",
      { kind: "rewrite", body: (j) => ({ ...j, draft: new Array(PROTOCOL_LIMITS.maxDraft + 1).fill(1) }) },
    ],
    ["a continuation with a token outside the vocabulary", { kind: "rewrite", body: (j) => ({ ...j, draft: [-1] }) }],
  ])("%s at some routed positions: identical, with fallback tokens there", async (_name, fault) => {
    const failing = calls.map((r) => new Set(r.filter((_, i) => i % 2 === 1)));
    let i = 0;
    const results = [] as TokenEvent[][];
    for (const p of prompts) {
      const set = failing[i++]!;
      const scenario: Scenario = (pos, req) => (req.path.endsWith("/next") && set.has(pos) ? fault : { kind: "pass" });
      results.push(await sameUnderFailures(p, scenario));
    }
    expect(results.flat().some((e) => e.origin === "fallback")).toBe(true);
    expect(unhandled).toEqual([]);
  });

  it("slower than the deadline at one routed position per answer: identical, with a fallback token there", async () => {
    // the deadline is short here, the induced delay far longer, so only the induced delay times out
    const deadline = 800;
    const results = [] as TokenEvent[][];
    for (const [i, p] of prompts.entries()) {
      const at = calls[i]![1] ?? calls[i]![0]!;
      const scenario: Scenario = (pos, req) => (req.path.endsWith("/next") && pos === at ? { kind: "delay", ms: 2500 } : { kind: "pass" });
      results.push(await sameUnderFailures(p, scenario, deadline));
    }
    expect(results.flat().filter((e) => e.origin === "fallback").length).toBeGreaterThan(0);
    expect(unhandled).toEqual([]);
  });

  it("an outage over a span of positions (appends and calls fail): identical, fallback inside, cloud after", async () => {
    const results = await expectSame((pos) => (pos >= 5 && pos < 15 ? { kind: "status", status: 503 } : { kind: "pass" }), {
      failures: true,
    });
    const all = results.flat();
    expect(all.some((e) => e.origin === "fallback" && e.index >= 5 && e.index < 15)).toBe(true);
    expect(all.some((e) => e.origin === "cloud" && e.index >= 15)).toBe(true);
  });

  it("the server restarted mid-answer (its sessions gone): both re-create and re-sync, identical", async () => {
    const restartAt = 12;
    const sessionsBefore = { value: 0 };
    const results = await expectSame(
      async (pos, _req, run) => {
        if (pos >= restartAt && !run.restarted) {
          run.restarted = true;
          run.restarting = (async () => {
            await server.close();
            server = await startServer(port);
            sessionsBefore.value++;
          })();
        }
        // a background append may start the restart while a call is on its way: the call waits too
        await run.restarting;
        return { kind: "pass" };
        // the restart is triggered by the first request about a later position: a pipelined call asks
        // about one while the call before it is still in flight, so the server would die under that call
        // for one client and not the other; pipelined calls meet failures in the tests above
      },
      { pipeline: false },
    );
    expect(sessionsBefore.value).toBe(prompts.length * 2);
    expect(results.flat().some((e) => e.origin === "cloud" && e.index >= restartAt)).toBe(true);
  });
});
