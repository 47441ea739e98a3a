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
  const server = await soakServer(opts, sessions, log);
  const { child } = server;
  const run = new SoakRun(new SoakClient(server.url, server.token));
  try {
    const health = (await run.client.call("GET", "/health")).json as unknown as CloudHealthResponse;
    if (health.maxSessions < sessions)
      throw new Error(`the server holds at most ${health.maxSessions} sessions, fewer than the ${sessions} asked for`);
    const before = await run.client.detail();
    if (before.sessions.length > 0) log(`note: the server already holds ${before.sessions.length} sessions`);
    const started = Date.now();
    const every = opts.sampleEveryMs ?? Math.min(10_000, Math.max(1000, Math.floor(opts.durationMs / 40)));
    const memory = new MemorySampler(run, child, started, every);
    const progress = setInterval(
      () => log(run.progress(started, memory.samples.at(-1))),
      Math.max(5000, Math.min(30_000, opts.durationMs / 10)),
    );
    const world: DeviceWorld = { run, identity: health.model, capacity: health.contextSize, deadline: started + opts.durationMs };
    await Promise.all(Array.from({ length: sessions }, (_, n) => new VirtualDevice(world, n, opts.seed ?? 1).run()));
    const durationMs = Date.now() - started;
    clearInterval(progress);
    await memory.stop();
    const after = await run.client.detail();
    checkAfter(run, before, after, child);
    const memoryAfter = memoryReport(run, memory.samples, after, opts, durationMs); // may fail the run: before `ok`
    return {
      ok: run.failureCount === 0,
      failures: run.failures,
      failureCount: run.failureCount,
      sessions,
      durationMs,
      ...run.requestReport(durationMs),
      memory: memoryAfter,
      server: { url: run.client.base, model: health.model.name, startedHere: child !== undefined },
    };
  } finally {
    await child?.stop();
  }
}

/** The server to soak: the running one at `url`, or one started here in a child process (its memory is then its own). */
async function soakServer(
  opts: SoakOptions,
  sessions: number,
  log: (line: string) => void,
): Promise<{ url: string; token: string | undefined; child: ChildServer | undefined }> {
  if (opts.url) return { url: opts.url, token: opts.token, child: undefined };
  if (!opts.model) throw new Error("runSoak needs a server url or a model to start one with");
  const token = `soak-${randomBytes(16).toString("hex")}`;
  log(`starting the cloud server (${opts.model}, ${sessions} sessions)…`);
  const child = await startChildServer(
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
  return { url: child.url, token, child };
}

/** Plain HTTP + JSON to the server, each request bounded in time; an unparsable body is kept as text. */
class SoakClient {
  readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(url: string, token: string | undefined) {
    this.base = url.replace(/\/$/, "");
    this.headers = { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) };
  }

  async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(this.base + path, {
      method,
      headers: this.headers,
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

  async detail(): Promise<HealthDetail> {
    const r = await this.call("GET", "/health");
    const d = (r.json as unknown as CloudHealthResponse).detail;
    if (r.status !== 200 || !d) throw new Error(`/health gave ${r.status} and ${d ? "" : "no "}detail (is the token right?)`);
    return d;
  }
}

/** What the run has seen so far: failures (the first 50 kept), requests by kind, next latencies, what the devices did. */
class SoakRun {
  readonly failures: string[] = [];
  failureCount = 0;
  requests = 0;
  readonly byKind: Record<string, number> = {};
  readonly latencies: number[] = [];
  readonly counts = { predictions: 0, rePredictions: 0, tieFlips: 0, rollbacks: 0, truncates: 0, recreated: 0 };

  constructor(readonly client: SoakClient) {}

  fail(what: string): void {
    this.failureCount++;
    if (this.failures.length < 50) this.failures.push(what);
  }

  /** One request of session `n`'s: its reply's JSON, or undefined (counted as a failure) when it had none or not a 200. */
  async request(n: number, kind: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown> | undefined> {
    const t0 = performance.now();
    let r;
    try {
      r = await this.client.call(method, path, body);
    } catch (err) {
      this.fail(`session ${n} ${kind}: no answer: ${errorMessage(err)}`);
      return undefined;
    }
    this.requests++;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    if (kind.startsWith("next")) this.latencies.push(performance.now() - t0);
    if (r.status !== 200) {
      this.fail(`session ${n} ${kind}: HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
      return undefined;
    }
    return r.json;
  }

  progress(started: number, s: MemorySample | undefined): string {
    return (
      `  ${Math.round((Date.now() - started) / 1000)} s: ${this.requests} requests, ${this.failureCount} failures` +
      (s ? `, server RSS ${mib(s.rssBytes)} MiB, ${s.tokensHeld} tokens held` : "")
    );
  }

  requestReport(durationMs: number) {
    const sorted = this.latencies.slice().sort((a, b) => a - b);
    return {
      requests: this.requests,
      requestsPerSecond: round(this.requests / (durationMs / 1000)),
      byKind: this.byKind,
      ...this.counts,
      nextLatencyMs: { p50: round(quantile(sorted, 0.5)), p99: round(quantile(sorted, 0.99)), max: round(sorted[sorted.length - 1] ?? 0) },
    };
  }
}

/** Samples the server's memory through its /health every `every` ms until stopped; a server that exits is a failure. */
class MemorySampler {
  readonly samples: MemorySample[] = [];
  private sampling = true;
  private readonly loop: Promise<void>;

  constructor(
    private readonly run: SoakRun,
    private readonly child: ChildServer | undefined,
    private readonly started: number,
    private readonly every: number,
  ) {
    this.loop = this.sampleUntilStopped();
  }

  async stop(): Promise<void> {
    this.sampling = false;
    await this.loop;
  }

  private async sampleUntilStopped(): Promise<void> {
    while (this.sampling) {
      try {
        const d = await this.run.client.detail();
        this.samples.push({
          atMs: Date.now() - this.started,
          rssBytes: d.memory.process.rssBytes,
          heapUsedBytes: d.memory.process.heapUsedBytes,
          tokensHeld: d.memory.tokensHeld,
          kvBytesInUse: d.memory.kvBytesInUse,
          pending: d.queue.pending,
          sessions: d.sessions.length,
        });
      } catch (err) {
        this.run.fail(`health sample failed: ${errorMessage(err)}`);
      }
      if (this.child?.exited() != null) this.run.fail(`the server exited (${this.child.exited()})`);
      await sleep(this.every);
    }
  }
}

interface DeviceWorld {
  run: SoakRun;
  identity: ModelIdentity;
  /** tokens per session on the server */
  capacity: number;
  deadline: number;
}

/** One virtual device on one session: a conversation's calls, syncs, rollbacks, truncations and re-creations, at random. */
class VirtualDevice {
  private readonly rnd: () => number;
  private id: string | undefined;
  /** the tokens the server holds, as this device knows them */
  private history: number[] = [];
  /** tokens made since the last sync: the delta of the next call */
  private pending: number[];
  /** what the server predicted after history[0..L), with its margin over the runner-up */
  private readonly predicted = new Map<number, { tokenId: number; margin: number }>();

  constructor(
    private readonly world: DeviceWorld,
    private readonly n: number,
    seed: number,
  ) {
    this.rnd = rng(seed * 7919 + n);
    this.pending = this.tokens(this.int(4, 24)); // the prompt
  }

  async run(): Promise<void> {
    this.id = await this.create();
    while (this.id && Date.now() < this.world.deadline) {
      // keep a conversation inside the session: start over (truncate to a prefix) when it fills up
      if (this.history.length + this.pending.length + 32 > this.world.capacity) {
        if (!(await this.startOver())) break;
        continue;
      }
      if (!(await this.act(this.id, this.rnd()))) break;
      await sleep(this.int(0, 10)); // the SLM's own steps between calls
    }
    if (this.id) await this.request("delete", "DELETE", `/v1/sessions/${this.id}`);
  }

  /** One thing a device does, picked by `roll`; false when its request failed (the device stops). */
  private act(id: string, roll: number): Promise<boolean> {
    const h = this.history.length;
    if (roll < 0.55) return this.next(id);
    if (roll < 0.72) return this.append(id);
    if (roll < 0.84 && h > 2) return this.rollback(id);
    if (roll < 0.92 && h > 0 && this.predicted.has(h)) return this.repredict(id);
    if (roll < 0.99) return this.truncateTail(id);
    return this.recreate(id);
  }

  /** A cloud-routed token: send the delta, take the LLM's token, feed it back next time. */
  private async next(id: string): Promise<boolean> {
    const topK = this.int(0, 1) * 2;
    const L = this.history.length + this.pending.length;
    const r = await this.request("next", "POST", `/v1/sessions/${id}/next`, { base: this.history.length, tokens: this.pending, topK });
    if (!r) return false;
    checkNext(r, L, this.pending.length, topK, this.world.identity.vocabSize, (m) => this.fail(`next: ${m}`));
    this.history = this.history.concat(this.pending);
    this.forgetFrom(L);
    this.predicted.set(L, { tokenId: r.tokenId as number, margin: margin(r) });
    this.world.run.counts.predictions++;
    // the device accepts it (and, as its SLM goes on, adds a few local tokens)
    this.pending = [r.tokenId as number, ...this.tokens(this.int(0, 3))];
    return true;
  }

  /** Background sync of local tokens. */
  private async append(id: string): Promise<boolean> {
    const r = await this.request("append", "POST", `/v1/sessions/${id}/append`, { base: this.history.length, tokens: this.pending });
    if (!r) return false;
    const L = this.history.length + this.pending.length;
    if (r.length !== L || r.evaluated !== this.pending.length)
      this.fail(`append: ${JSON.stringify(r)}, expected length ${L}, evaluated ${this.pending.length}`);
    this.history = this.history.concat(this.pending);
    this.forgetFrom(L - 1);
    this.pending = this.tokens(this.int(1, 8));
    return true;
  }

  /** The device disagreed a few tokens back: roll back and continue on another branch. */
  private async rollback(id: string): Promise<boolean> {
    const back = this.int(1, Math.min(16, this.history.length - 1));
    const b = this.history.length - back;
    const delta = this.tokens(this.int(1, 4));
    const r = await this.request("next-rollback", "POST", `/v1/sessions/${id}/next`, { base: b, tokens: delta, topK: 2 });
    if (!r) return false;
    checkNext(r, b + delta.length, delta.length, 2, this.world.identity.vocabSize, (m) => this.fail(`rollback: ${m}`));
    this.history = this.history.slice(0, b).concat(delta);
    this.forgetFrom(b);
    this.predicted.set(this.history.length, { tokenId: r.tokenId as number, margin: margin(r) });
    this.world.run.counts.rollbacks++;
    this.pending = [r.tokenId as number];
    return true;
  }

  /** Re-predict at the same history (a retried call): must give the same token, but at a near-tie. */
  private async repredict(id: string): Promise<boolean> {
    const h = this.history.length;
    const first = this.predicted.get(h)!;
    const r = await this.request("next-repredict", "POST", `/v1/sessions/${id}/next`, { base: h, tokens: [], topK: 2 });
    if (!r) return false;
    checkNext(r, h, 1, 2, this.world.identity.vocabSize, (m) => this.fail(`re-predict: ${m}`));
    const counts = this.world.run.counts;
    counts.rePredictions++;
    if (r.tokenId !== first.tokenId) {
      if (Math.min(first.margin, margin(r)) < TIE) counts.tieFlips++;
      else this.fail(`re-predict at ${h}: token ${r.tokenId as number}, first ${first.tokenId} (margins ${first.margin}, ${margin(r)})`);
    }
    return true;
  }

  /** Truncate near the end (the user edited the last message). */
  private async truncateTail(id: string): Promise<boolean> {
    const keep = this.int(Math.floor((this.history.length * 3) / 4), this.history.length);
    const r = await this.request("truncate", "POST", `/v1/sessions/${id}/truncate`, { length: keep });
    if (!r) return false;
    if (r.length !== keep || r.evaluated !== 0) this.fail(`truncate: ${JSON.stringify(r)}, expected length ${keep}`);
    this.history = this.history.slice(0, keep);
    this.forgetFrom(keep - 1);
    if (this.pending.length === 0) this.pending = this.tokens(1);
    this.world.run.counts.truncates++;
    return true;
  }

  /** The session is nearly full: keep a short prefix and go on from there. */
  private async startOver(): Promise<boolean> {
    const keep = this.int(0, Math.floor(this.world.capacity / 4));
    const r = await this.request("truncate", "POST", `/v1/sessions/${this.id}/truncate`, { length: keep });
    if (!r) return false;
    if (r.length !== keep) this.fail(`truncate: length ${r.length}, expected ${keep}`);
    this.history = this.history.slice(0, keep);
    this.forgetFrom(keep);
    this.pending = this.pending.length ? this.pending.slice(0, 4) : this.tokens(1);
    this.world.run.counts.truncates++;
    return true;
  }

  /** A new conversation: delete and re-create. */
  private async recreate(id: string): Promise<boolean> {
    const r = await this.request("delete", "DELETE", `/v1/sessions/${id}`);
    if (!r) return false;
    this.id = await this.create();
    this.history = [];
    this.predicted.clear();
    this.pending = this.tokens(this.int(4, 24));
    this.world.run.counts.recreated++;
    return true;
  }

  private async create(): Promise<string | undefined> {
    const r = await this.request("create", "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: this.world.identity });
    return typeof r?.sessionId === "string" ? r.sessionId : undefined;
  }

  private request(kind: string, method: string, path: string, body?: unknown) {
    return this.world.run.request(this.n, kind, method, path, body);
  }

  private fail(what: string): void {
    this.world.run.fail(`session ${this.n} ${what}`);
  }

  private forgetFrom(L: number): void {
    for (const k of this.predicted.keys()) if (k > L) this.predicted.delete(k);
  }

  private int(lo: number, hi: number): number {
    return lo + Math.floor(this.rnd() * (hi - lo + 1));
  }

  private tokens(k: number): number[] {
    return Array.from({ length: k }, () => this.int(0, this.world.identity.vocabSize - 1));
  }
}

/** After the run: every session and token given back, no request left pending, no internal error answered or logged. */
function checkAfter(run: SoakRun, before: HealthDetail, after: HealthDetail, child: ChildServer | undefined): void {
  if (after.memory.tokensHeld !== before.memory.tokensHeld || after.sessions.length !== before.sessions.length) {
    run.fail(`after deleting every session the server holds ${after.sessions.length} sessions and ${after.memory.tokensHeld} tokens`);
  }
  if (after.queue.pending !== 0) run.fail(`${after.queue.pending} requests still pending after the run`);
  if ((after.stats.errors.internal ?? 0) > (before.stats.errors.internal ?? 0))
    run.fail(`the server answered ${after.stats.errors.internal} internal errors`);
  if (child && /failed:|cannot answer/.test(child.output())) run.fail(`the server logged errors:\n${child.output().slice(-2000)}`);
}

/** Memory: the first half of the run against the second, after the warm-up (growth past the bound fails the run). */
function memoryReport(
  run: SoakRun,
  samples: MemorySample[],
  after: HealthDetail,
  opts: SoakOptions,
  durationMs: number,
): SoakReport["memory"] {
  const warm = opts.durationMs * (opts.warmupFraction ?? 0.1);
  const mid = warm + (durationMs - warm) / 2;
  const firstHalf = samples.filter((s) => s.atMs >= warm && s.atMs < mid);
  const secondHalf = samples.filter((s) => s.atMs >= mid);
  const maxGrowthBytes = opts.maxGrowthBytes ?? 24 * 1024 * 1024;
  const m1 = median(firstHalf.map((s) => s.rssBytes));
  const m2 = median(secondHalf.map((s) => s.rssBytes));
  if (firstHalf.length < 2 || secondHalf.length < 2)
    run.fail(`too few memory samples to compare halves (${firstHalf.length} and ${secondHalf.length}); run longer`);
  else if (m2 - m1 > maxGrowthBytes)
    run.fail(`server RSS grew ${mib(m2 - m1)} MiB from the first half to the second (bound ${mib(maxGrowthBytes)} MiB)`);
  return {
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
  };
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
