/**
 * Soak run of the cloud token server: N concurrent sessions (64 by default) doing what device clients
 * do — create, sync local tokens (append), ask for the next token and feed it back, roll back after a
 * disagreement, truncate, re-predict, delete and re-create — for a fixed time, against a server in a
 * child process (its memory is then its own) or a running one (`url`).
 *
 * It fails on any error: a status other than 200, a reply whose length / evaluated count / token /
 * log-probability is not what the protocol says, a re-prediction that differs from the first
 * prediction at the same history (unless the two best tokens were within TIE of each other, where
 * batched and unbatched evaluation may round differently), a server that exits or logs an internal
 * error, or memory left held after every session is deleted. And it fails when the server's resident
 * memory (sampled through its own /health) grows by more than `maxGrowthBytes` from the first half of
 * the run to the second (medians, after a warm-up): the KV cache is allocated at start, so what is left
 * to grow is leaks.
 *
 * Used by `npm run soak` (cloud/soakMain.ts, minutes) and test/cloud/soak.test.ts (seconds).
 */
import { randomBytes } from "node:crypto";
import { PROTOCOL_VERSION, type ModelIdentity } from "../shared/protocol.js";
import { startChildServer, type ChildServer } from "./child.js";
import type { CloudHealthResponse, HealthDetail } from "./server.js";
import { mulberry32 as rng } from "../shared/prng.js";
import { errorMessage } from "../shared/errors.js";

export interface SoakOptions {
  /** concurrent sessions (default 64) */
  sessions?: number;
  durationMs: number;
  /** a running server to soak; otherwise one is started from `model` */
  url?: string;
  token?: string;
  /** model for the server started here */
  model?: string;
  /** tokens per session on the server started here (default 512) */
  contextSize?: number;
  /** RSS sample period (default: a 40th of the run, 1 to 10 s) */
  sampleEveryMs?: number;
  seed?: number;
  /** allowed RSS growth, first-half median to second-half median (default 24 MiB) */
  maxGrowthBytes?: number;
  /** the share of the run before the first-half window starts (default 0.1) */
  warmupFraction?: number;
  /** progress lines (default: none) */
  log?: (line: string) => void;
}

export interface MemorySample {
  atMs: number;
  rssBytes: number;
  heapUsedBytes: number;
  tokensHeld: number;
  kvBytesInUse: number;
  pending: number;
  sessions: number;
}

export interface SoakReport {
  ok: boolean;
  /** what went wrong (first 50) */
  failures: string[];
  failureCount: number;
  sessions: number;
  durationMs: number;
  requests: number;
  requestsPerSecond: number;
  byKind: Record<string, number>;
  predictions: number;
  rePredictions: number;
  /** re-predictions that differed from the first prediction at a near-tie (allowed, counted) */
  tieFlips: number;
  rollbacks: number;
  truncates: number;
  recreated: number;
  nextLatencyMs: { p50: number; p99: number; max: number };
  memory: {
    samples: number;
    firstHalfRssMedianBytes: number;
    secondHalfRssMedianBytes: number;
    growthBytes: number;
    maxGrowthBytes: number;
    firstRssBytes: number;
    lastRssBytes: number;
    peakRssBytes: number;
    firstHalfHeapMedianBytes: number;
    secondHalfHeapMedianBytes: number;
    peakTokensHeld: number;
    peakKvBytesInUse: number;
    kvBytesAllocated: number;
    peakPending: number;
  };
  server: { url: string; model: string; startedHere: boolean };
}

/** A near-tie: batched and unbatched decodes round differently (~1e-4 measured), so argmax may flip. */
const TIE = 2e-3;
const REQUEST_TIMEOUT_MS = 30_000;

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const sessions = opts.sessions ?? 64;
  const log = opts.log ?? (() => {});
  const failures: string[] = [];
  let failureCount = 0;
  const fail = (what: string) => {
    failureCount++;
    if (failures.length < 50) failures.push(what);
  };

  let child: ChildServer | undefined;
  let url = opts.url;
  let token = opts.token;
  if (!url) {
    if (!opts.model) throw new Error("runSoak needs a server url or a model to start one with");
    token = `soak-${randomBytes(16).toString("hex")}`;
    log(`starting the cloud server (${opts.model}, ${sessions} sessions)…`);
    child = await startChildServer(
      // every session here shares one client key (one token, one address), unlike 64 real devices: a
      // per-client limit fit for one device would throttle the lot, so it is raised, not turned off
      [
        "--model",
        opts.model,
        "--port",
        "0",
        "--max-sessions",
        String(sessions),
        "--context-size",
        String(opts.contextSize ?? 512),
        "--rate-limit",
        "100000",
      ],
      { token },
    );
    url = child.url;
  }
  const base = url.replace(/\/$/, "");
  const headers: Record<string, string> = { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) };

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let json: Record<string, unknown>;
    try {
      json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      json = { unparsable: text.slice(0, 200) };
    }
    return { status: res.status, json };
  }
  async function detail(): Promise<HealthDetail> {
    const r = await call("GET", "/health");
    const d = (r.json as unknown as CloudHealthResponse).detail;
    if (r.status !== 200 || !d) throw new Error(`/health gave ${r.status} and ${d ? "" : "no "}detail (is the token right?)`);
    return d;
  }

  try {
    const health = (await call("GET", "/health")).json as unknown as CloudHealthResponse;
    const identity: ModelIdentity = health.model;
    const capacity = health.contextSize;
    const vocab = identity.vocabSize;
    if (health.maxSessions < sessions)
      throw new Error(`the server holds at most ${health.maxSessions} sessions, fewer than the ${sessions} asked for`);
    const before = await detail();
    if (before.sessions.length > 0) log(`note: the server already holds ${before.sessions.length} sessions`);

    const started = Date.now();
    const deadline = started + opts.durationMs;
    const byKind: Record<string, number> = {};
    const latencies: number[] = [];
    const counts = { predictions: 0, rePredictions: 0, tieFlips: 0, rollbacks: 0, truncates: 0, recreated: 0 };
    const samples: MemorySample[] = [];
    let requests = 0;

    // ---- memory sampler ----
    const every = opts.sampleEveryMs ?? Math.min(10_000, Math.max(1000, Math.floor(opts.durationMs / 40)));
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          const d = await detail();
          samples.push({
            atMs: Date.now() - started,
            rssBytes: d.memory.process.rssBytes,
            heapUsedBytes: d.memory.process.heapUsedBytes,
            tokensHeld: d.memory.tokensHeld,
            kvBytesInUse: d.memory.kvBytesInUse,
            pending: d.queue.pending,
            sessions: d.sessions.length,
          });
        } catch (err) {
          fail(`health sample failed: ${errorMessage(err)}`);
        }
        if (child?.exited() != null) fail(`the server exited (${child.exited()})`);
        await sleep(every);
      }
    })();
    const progress = setInterval(
      () => {
        const s = samples[samples.length - 1];
        log(
          `  ${Math.round((Date.now() - started) / 1000)} s: ${requests} requests, ${failureCount} failures` +
            (s ? `, server RSS ${mib(s.rssBytes)} MiB, ${s.tokensHeld} tokens held` : ""),
        );
      },
      Math.max(5000, Math.min(30_000, opts.durationMs / 10)),
    );

    // ---- one virtual device per session ----
    const device = async (n: number) => {
      const rnd = rng((opts.seed ?? 1) * 7919 + n);
      const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
      const tokens = (k: number) => Array.from({ length: k }, () => int(0, vocab - 1));
      const request = async (kind: string, method: string, path: string, body?: unknown) => {
        const t0 = performance.now();
        let r;
        try {
          r = await call(method, path, body);
        } catch (err) {
          fail(`session ${n} ${kind}: no answer: ${errorMessage(err)}`);
          return undefined;
        }
        requests++;
        byKind[kind] = (byKind[kind] ?? 0) + 1;
        if (kind.startsWith("next")) latencies.push(performance.now() - t0);
        if (r.status !== 200) {
          fail(`session ${n} ${kind}: HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
          return undefined;
        }
        return r.json;
      };
      const create = async () => {
        const r = await request("create", "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
        return typeof r?.sessionId === "string" ? r.sessionId : undefined;
      };

      let id = await create();
      /** the tokens the server holds, as this device knows them */
      let history: number[] = [];
      /** tokens made since the last sync: the delta of the next call */
      let pending: number[] = tokens(int(4, 24)); // the prompt
      /** what the server predicted after history[0..L), with its margin over the runner-up */
      const predicted = new Map<number, { tokenId: number; margin: number }>();
      const forgetFrom = (L: number) => {
        for (const k of predicted.keys()) if (k > L) predicted.delete(k);
      };

      while (id && Date.now() < deadline) {
        // keep a conversation inside the session: start over (truncate to a prefix) when it fills up
        if (history.length + pending.length + 32 > capacity) {
          const keep = int(0, Math.floor(capacity / 4));
          const r = await request("truncate", "POST", `/v1/sessions/${id}/truncate`, { length: keep });
          if (!r) break;
          if (r.length !== keep) fail(`session ${n} truncate: length ${r.length}, expected ${keep}`);
          history = history.slice(0, keep);
          forgetFrom(keep);
          pending = pending.length ? pending.slice(0, 4) : tokens(1);
          counts.truncates++;
          continue;
        }
        const roll = rnd();
        if (roll < 0.55) {
          // a cloud-routed token: send the delta, take the LLM's token, feed it back next time
          const topK = int(0, 1) * 2;
          const L = history.length + pending.length;
          const r = await request("next", "POST", `/v1/sessions/${id}/next`, { base: history.length, tokens: pending, topK });
          if (!r) break;
          checkNext(r, L, pending.length, topK, vocab, (m) => fail(`session ${n} next: ${m}`));
          history = history.concat(pending);
          forgetFrom(L);
          predicted.set(L, { tokenId: r.tokenId as number, margin: margin(r) });
          counts.predictions++;
          // the device accepts it (and, as its SLM goes on, adds a few local tokens)
          pending = [r.tokenId as number, ...tokens(int(0, 3))];
        } else if (roll < 0.72) {
          // background sync of local tokens
          const r = await request("append", "POST", `/v1/sessions/${id}/append`, { base: history.length, tokens: pending });
          if (!r) break;
          const L = history.length + pending.length;
          if (r.length !== L || r.evaluated !== pending.length)
            fail(`session ${n} append: ${JSON.stringify(r)}, expected length ${L}, evaluated ${pending.length}`);
          history = history.concat(pending);
          forgetFrom(L - 1);
          pending = tokens(int(1, 8));
        } else if (roll < 0.84 && history.length > 2) {
          // the device disagreed a few tokens back: roll back and continue on another branch
          const back = int(1, Math.min(16, history.length - 1));
          const b = history.length - back;
          const delta = tokens(int(1, 4));
          const r = await request("next-rollback", "POST", `/v1/sessions/${id}/next`, { base: b, tokens: delta, topK: 2 });
          if (!r) break;
          checkNext(r, b + delta.length, delta.length, 2, vocab, (m) => fail(`session ${n} rollback: ${m}`));
          history = history.slice(0, b).concat(delta);
          forgetFrom(b);
          predicted.set(history.length, { tokenId: r.tokenId as number, margin: margin(r) });
          counts.rollbacks++;
          pending = [r.tokenId as number];
        } else if (roll < 0.92 && history.length > 0 && predicted.has(history.length)) {
          // re-predict at the same history (a retried call): must give the same token
          const first = predicted.get(history.length)!;
          const r = await request("next-repredict", "POST", `/v1/sessions/${id}/next`, { base: history.length, tokens: [], topK: 2 });
          if (!r) break;
          checkNext(r, history.length, 1, 2, vocab, (m) => fail(`session ${n} re-predict: ${m}`));
          counts.rePredictions++;
          if (r.tokenId !== first.tokenId) {
            if (Math.min(first.margin, margin(r)) < TIE) counts.tieFlips++;
            else
              fail(
                `session ${n} re-predict at ${history.length}: token ${r.tokenId as number}, first ${first.tokenId} (margins ${first.margin}, ${margin(r)})`,
              );
          }
        } else if (roll < 0.99) {
          // truncate near the end (the user edited the last message)
          const keep = int(Math.floor((history.length * 3) / 4), history.length);
          const r = await request("truncate", "POST", `/v1/sessions/${id}/truncate`, { length: keep });
          if (!r) break;
          if (r.length !== keep || r.evaluated !== 0) fail(`session ${n} truncate: ${JSON.stringify(r)}, expected length ${keep}`);
          history = history.slice(0, keep);
          forgetFrom(keep - 1);
          if (pending.length === 0) pending = tokens(1);
          counts.truncates++;
        } else {
          // a new conversation: delete and re-create
          const r = await request("delete", "DELETE", `/v1/sessions/${id}`);
          if (!r) break;
          id = await create();
          history = [];
          predicted.clear();
          pending = tokens(int(4, 24));
          counts.recreated++;
        }
        await sleep(int(0, 10)); // the SLM's own steps between calls
      }
      if (id) await request("delete", "DELETE", `/v1/sessions/${id}`);
    };
    await Promise.all(Array.from({ length: sessions }, (_, n) => device(n)));
    const durationMs = Date.now() - started;
    clearInterval(progress);
    sampling = false;
    await sampler;

    // ---- after: everything given back, nothing logged ----
    const after = await detail();
    if (after.memory.tokensHeld !== before.memory.tokensHeld || after.sessions.length !== before.sessions.length) {
      fail(`after deleting every session the server holds ${after.sessions.length} sessions and ${after.memory.tokensHeld} tokens`);
    }
    if (after.queue.pending !== 0) fail(`${after.queue.pending} requests still pending after the run`);
    if ((after.stats.errors.internal ?? 0) > (before.stats.errors.internal ?? 0))
      fail(`the server answered ${after.stats.errors.internal} internal errors`);
    if (child && /failed:|cannot answer/.test(child.output())) fail(`the server logged errors:\n${child.output().slice(-2000)}`);

    // ---- memory: first half against second half, after the warm-up ----
    const warm = opts.durationMs * (opts.warmupFraction ?? 0.1);
    const mid = warm + (durationMs - warm) / 2;
    const firstHalf = samples.filter((s) => s.atMs >= warm && s.atMs < mid);
    const secondHalf = samples.filter((s) => s.atMs >= mid);
    const maxGrowthBytes = opts.maxGrowthBytes ?? 24 * 1024 * 1024;
    const m1 = median(firstHalf.map((s) => s.rssBytes));
    const m2 = median(secondHalf.map((s) => s.rssBytes));
    if (firstHalf.length < 2 || secondHalf.length < 2)
      fail(`too few memory samples to compare halves (${firstHalf.length} and ${secondHalf.length}); run longer`);
    else if (m2 - m1 > maxGrowthBytes)
      fail(`server RSS grew ${mib(m2 - m1)} MiB from the first half to the second (bound ${mib(maxGrowthBytes)} MiB)`);

    const sorted = latencies.slice().sort((a, b) => a - b);
    return {
      ok: failureCount === 0,
      failures,
      failureCount,
      sessions,
      durationMs,
      requests,
      requestsPerSecond: round(requests / (durationMs / 1000)),
      byKind,
      ...counts,
      nextLatencyMs: { p50: round(quantile(sorted, 0.5)), p99: round(quantile(sorted, 0.99)), max: round(sorted[sorted.length - 1] ?? 0) },
      memory: {
        samples: samples.length,
        firstHalfRssMedianBytes: m1,
        secondHalfRssMedianBytes: m2,
        growthBytes: m2 - m1,
        maxGrowthBytes,
        firstRssBytes: samples[0]?.rssBytes ?? 0,
        lastRssBytes: samples[samples.length - 1]?.rssBytes ?? 0,
        peakRssBytes: Math.max(0, ...samples.map((s) => s.rssBytes)),
        firstHalfHeapMedianBytes: median(firstHalf.map((s) => s.heapUsedBytes)),
        secondHalfHeapMedianBytes: median(secondHalf.map((s) => s.heapUsedBytes)),
        peakTokensHeld: Math.max(0, ...samples.map((s) => s.tokensHeld)),
        peakKvBytesInUse: Math.max(0, ...samples.map((s) => s.kvBytesInUse)),
        kvBytesAllocated: after.memory.kvBytesAllocated,
        peakPending: after.queue.peakPending,
      },
      server: { url: base, model: identity.name, startedHere: child !== undefined },
    };
  } finally {
    await child?.stop();
  }
}

/** Checks a next reply against the protocol and what was sent. */
function checkNext(
  r: Record<string, unknown>,
  length: number,
  evaluated: number,
  topK: number,
  vocab: number,
  fail: (m: string) => void,
): void {
  if (r.length !== length) fail(`length ${String(r.length)}, expected ${length}`);
  if (r.evaluated !== evaluated) fail(`evaluated ${String(r.evaluated)}, expected ${evaluated}`);
  const t = r.tokenId;
  if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= vocab) fail(`token ${String(t)} outside the vocabulary`);
  if (typeof r.logprob !== "number" || !(r.logprob <= 0)) fail(`log-probability ${String(r.logprob)}`);
  const top = r.top as { tokenId: number; logprob: number }[];
  if (!Array.isArray(top) || top.length !== topK) fail(`top has ${Array.isArray(top) ? top.length : "no"} entries, expected ${topK}`);
  else if (topK > 0 && top[0].tokenId !== t) fail(`top[0] is ${top[0].tokenId}, not the token ${String(t)}`);
}

/** The log-probability margin of the chosen token over the runner-up (Infinity without a top-2). */
function margin(r: Record<string, unknown>): number {
  const top = r.top as { logprob: number }[] | undefined;
  return top && top.length >= 2 ? top[0].logprob - top[1].logprob : Infinity;
}

function median(xs: number[]): number {
  return quantile(
    xs.slice().sort((a, b) => a - b),
    0.5,
  );
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
