/**
 * Admission limits and memory accounting of the cloud token server (issue 5, item 3), and the batching
 * rule that keeps concurrent sessions' predictions apart (cloud/batching.ts). Real model (stories260K),
 * real HTTP on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BatchItem, LlamaModel, Token } from "node-llama-cpp";
import { orderedOutputsStrategy, tokensBeforeOutput } from "../../cloud/batching.js";
import { CloudError } from "../../cloud/errors.js";
import { kvLayout, MAX_SEQUENCES, MIB, sessionsWithinBudget } from "../../cloud/memory.js";
import { startCloudServer, type CloudHealthResponse, type CloudServer } from "../../cloud/server.js";
import { SessionManager } from "../../cloud/sessions.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { getTandemLlama } from "../../inference/llama.js";
import { loadModelFile, modelIdentity } from "../../inference/modelFile.js";
import { PROTOCOL_VERSION, type ModelIdentity } from "../../shared/protocol.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import { errorMessage } from "../../shared/errors.js";

const TOKEN = "admission-token-0123456789";
/** stories260K: 5 layers × (key 8 + value 8) × 4 KV heads × 2 bytes (F16) */
const STORIES_KV_BYTES_PER_TOKEN = 5 * (8 + 8) * 4 * 2;

noteMissingShared("the cloud admission tests");

async function call(server: CloudServer, method: string, route: string, body?: unknown, token: string | null = TOKEN) {
  const res = await fetch(server.url + route, {
    method,
    headers: { "content-type": "application/json", ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any -- many reply shapes; each assertion states what it expects
}

describe.skipIf(!hasStories)("cloud admission and memory accounting", () => {
  let model: LlamaModel;
  let identity: ModelIdentity;
  const tokens = (n: number, from = 3) => Array.from({ length: n }, (_, i) => ((from + i * 37) % 500) + 3);

  beforeAll(async () => {
    const f = await ensureFixtures();
    ({ model } = await loadModelFile(await getTandemLlama(), f.storiesLlm!));
    identity = modelIdentity(model);
  });
  afterAll(async () => {
    await model?.dispose();
  });

  async function createSession(server: CloudServer): Promise<string> {
    const r = await call(server, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.sessionId as string;
  }

  describe("KV bytes per token", () => {
    it("follows the model's dimensions (stories260K: 640 B) and agrees with node-llama-cpp's own estimate", async () => {
      expect(kvLayout(model)).toEqual({ layers: 5, bytesPerToken: STORIES_KV_BYTES_PER_TOKEN });
      // a second shape: qwen2 random fixture, 4 layers, 2 KV heads of 16 dims
      const f = await ensureFixtures();
      const { model: qwen } = await loadModelFile(await getTandemLlama(), f.randB);
      try {
        expect(kvLayout(qwen).bytesPerToken).toBe(4 * (16 + 16) * 2 * 2);
        // node-llama-cpp's KV estimator (internal in 3.21.1, so reached through a cast): for N cells
        // and every layer on the CPU, its cpuKVCacheSize is what llama.cpp allocates
        for (const m of [model, qwen]) {
          const insights = m.fileInsights as unknown as {
            _estimateContextCacheMemorySplitInBytes(o: object): { cpuKVCacheSize: number };
          };
          expect(
            typeof insights._estimateContextCacheMemorySplitInBytes,
            "node-llama-cpp's KV estimator moved: re-check cloud/memory.ts",
          ).toBe("function");
          const cells = 1000;
          const layers = (m.fileInfo.architectureMetadata as { block_count: number }).block_count;
          const estimate = insights._estimateContextCacheMemorySplitInBytes({
            fullAttentionKvSize: cells,
            swaKvSize: cells,
            sequences: 1,
            totalFileLayers: layers,
            finalModelGpuLayers: 0,
            usingGpu: false,
            flashAttention: false,
          });
          expect(estimate.cpuKVCacheSize).toBe(cells * kvLayout(m).bytesPerToken);
        }
      } finally {
        await qwen.dispose();
      }
    });

    it("budgets sessions: derives how many fit, refuses more than fit, and says so with the numbers", () => {
      const perSession = 640 * 256;
      expect(sessionsWithinBudget({ bytesPerToken: 640, cellsPerSession: 256, budgetBytes: 10 * perSession })).toBe(10);
      expect(sessionsWithinBudget({ bytesPerToken: 640, cellsPerSession: 256, budgetBytes: 10 * perSession + perSession - 1 })).toBe(10);
      expect(sessionsWithinBudget({ bytesPerToken: 640, cellsPerSession: 256, budgetBytes: 10 * perSession, maxSessions: 10 })).toBe(10);
      expect(() =>
        sessionsWithinBudget({ bytesPerToken: 640, cellsPerSession: 256, budgetBytes: 10 * perSession, maxSessions: 11 }),
      ).toThrow(/11 sessions need 1\.7 MiB of KV cache, more than the budget of 1\.6 MiB: .* at most 10 fit/);
      expect(() => sessionsWithinBudget({ bytesPerToken: 640, cellsPerSession: 256, budgetBytes: perSession - 1 })).toThrow(
        /holds no session/,
      );
      // llama.cpp's limit caps a derived count too
      expect(sessionsWithinBudget({ bytesPerToken: 1, cellsPerSession: 1, budgetBytes: 1e9 })).toBe(MAX_SEQUENCES);
    });

    it("the server takes its session count from --max-kv-mb and never allocates beyond it", async () => {
      await expect(
        SessionManager.create({ model, vocabSize: identity.vocabSize, contextSize: 256, maxKvBytes: 1 * MIB, maxSessions: 7 }),
      ).rejects.toThrow(/7 sessions need .* at most 6 fit/);
      await expect(
        SessionManager.create({ model, vocabSize: identity.vocabSize, maxSessions: MAX_SEQUENCES + 1, contextSize: 64 }),
      ).rejects.toThrow(/at most 256/);
      const server = await startCloudServer({ model, port: 0, token: TOKEN, contextSize: 256, maxKvMb: 1 });
      try {
        // 1 MiB / (256 cells × 640 B) = 6.4
        expect(server.maxSessions).toBe(6);
        const mem = server.memory();
        expect(mem.kvBytesAllocated).toBe(6 * 256 * 640);
        expect(mem.kvBytesAllocated).toBeLessThanOrEqual(mem.kvBytesBudget!);
        for (let i = 0; i < 6; i++) await createSession(server);
        const full = await call(server, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
        expect(full.status).toBe(429);
        expect(full.body.error.code).toBe("too_many_sessions");
        // the sessions were used just now and go idle after 10 min: come back within the minute
        expect(Number(full.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
        expect(Number(full.headers.get("retry-after"))).toBeLessThanOrEqual(60);
      } finally {
        await server.close();
      }
    });
  });

  describe("memory in /health", () => {
    let server: CloudServer;
    beforeAll(async () => {
      server = await startCloudServer({ model, port: 0, token: TOKEN, maxSessions: 4, contextSize: 256 });
    });
    afterAll(() => server?.close());

    const health = async (token: string | null) => (await call(server, "GET", "/health", undefined, token)).body as CloudHealthResponse;

    it("shows detail only to the token's holders, and no session IDs even to them", async () => {
      const a = await createSession(server);
      expect((await health(null)).detail).toBeUndefined();
      expect((await health("wrong-token-0123456789")).detail).toBeUndefined();
      const mine = await health(TOKEN);
      expect(mine.detail).toBeDefined();
      expect(mine.sessions).toBe(1);
      expect(JSON.stringify(mine)).not.toContain(a);
      await call(server, "DELETE", `/v1/sessions/${a}`);
    });

    it("accounts each session's KV memory as it grows, rolls back and goes", async () => {
      const a = await createSession(server);
      const b = await createSession(server);
      const at = async () => (await health(TOKEN)).detail!;
      expect((await at()).memory).toMatchObject({
        kvBytesPerToken: 640,
        kvBytesAllocated: 4 * 256 * 640,
        kvBytesBudget: null,
        tokensHeld: 0,
        kvBytesInUse: 0,
      });

      expect((await call(server, "POST", `/v1/sessions/${a}/append`, { base: 0, tokens: tokens(40) })).status).toBe(200);
      expect((await call(server, "POST", `/v1/sessions/${b}/next`, { base: 0, tokens: tokens(10) })).status).toBe(200);
      let d = await at();
      expect(d.memory).toMatchObject({ tokensHeld: 50, kvBytesInUse: 50 * 640 });
      expect(d.sessions.map((s) => [s.tokens, s.kvBytes])).toEqual([
        [40, 40 * 640],
        [10, 10 * 640],
      ]);

      await call(server, "POST", `/v1/sessions/${a}/truncate`, { length: 15 });
      await call(server, "POST", `/v1/sessions/${b}/next`, { base: 4, tokens: tokens(2) }); // rollback 10 → 6
      d = await at();
      expect(d.memory.tokensHeld).toBe(21);
      expect(d.sessions.map((s) => s.tokens)).toEqual([15, 6]);

      await call(server, "DELETE", `/v1/sessions/${a}`);
      await call(server, "DELETE", `/v1/sessions/${b}`);
      d = await at();
      expect(d.memory).toMatchObject({ tokensHeld: 0, kvBytesInUse: 0 });
      expect(d.sessions).toEqual([]);
      expect(d.queue.pending).toBe(0);
      expect(d.memory.process.rssBytes).toBeGreaterThan(d.memory.kvBytesAllocated);
      expect(d.runtime.totalLayers).toBeGreaterThan(0);
    });
  });

  describe("queue bounds", () => {
    it("refuses a request beyond its session's queue (429) or the server's (503), with Retry-After, and recovers", async () => {
      const manager = await SessionManager.create({
        model,
        vocabSize: identity.vocabSize,
        maxSessions: 3,
        contextSize: 256,
        maxQueuedPerSession: 2,
        maxQueued: 3,
      });
      try {
        const [a, b, c] = await Promise.all(["x", "y", "z"].map((o) => manager.open(o).then((s) => s.sessionId)));
        // queued synchronously: the bounds are checked before any of them starts
        const first = manager.append(a, 0, tokens(30));
        const second = manager.next(a, 30, tokens(2), 0);
        const third = (() => {
          try {
            void manager.next(a, 32, tokens(1), 0);
            return undefined;
          } catch (err) {
            return err;
          }
        })();
        expect(third).toBeInstanceOf(CloudError);
        expect(third).toMatchObject({ code: "rate_limited", status: 429, retryAfterMs: 1000 });
        expect(errorMessage(third)).toMatch(/already has 2 requests waiting/);

        const other = manager.append(b, 0, tokens(5)); // the server's third
        let overflow: unknown;
        try {
          void manager.append(c, 0, tokens(5));
        } catch (err) {
          overflow = err;
        }
        expect(overflow).toMatchObject({ code: "rate_limited", status: 503, retryAfterMs: 1000 });
        expect(manager.queue()).toMatchObject({ pending: 3, maxPending: 3, maxPendingPerSession: 2, peakPending: 3 });
        expect(manager.stats()).toMatchObject({ refusedSessionQueue: 1, refusedServerQueue: 1 });

        // the refused requests changed nothing: the accepted ones ran in order
        expect(await first).toEqual({ length: 30, evaluated: 30 });
        expect(await second).toMatchObject({ length: 32, evaluated: 2 });
        expect(await other).toEqual({ length: 5, evaluated: 5 });
        expect(manager.queue().pending).toBe(0);
        expect(await manager.append(c, 0, tokens(5))).toEqual({ length: 5, evaluated: 5 });
      } finally {
        await manager.dispose();
      }
    });

    it("answers those refusals over HTTP: 429 for a session's queue, 503 for the server's, both with Retry-After", async () => {
      const server = await startCloudServer({
        model,
        port: 0,
        token: TOKEN,
        maxSessions: 3,
        contextSize: 512,
        maxQueuedPerSession: 1,
        maxQueued: 2,
      });
      try {
        const [a, b, c] = [await createSession(server), await createSession(server), await createSession(server)];
        const pending = async (n: number) => {
          for (let i = 0; i < 2000; i++) {
            const d = (await call(server, "GET", "/health")).body.detail;
            if (d.queue.pending >= n) return;
            await new Promise((r) => setTimeout(r, 1));
          }
          throw new Error(`never saw ${n} requests pending`);
        };
        // long evaluations (≈0.5-2 s for 500 tokens of this model on one thread) hold the queue while the others arrive
        const longA = call(server, "POST", `/v1/sessions/${a}/append`, { base: 0, tokens: tokens(500) });
        await pending(1);
        const sameSession = await call(server, "POST", `/v1/sessions/${a}/next`, { base: 500, tokens: tokens(1) });
        const longB = call(server, "POST", `/v1/sessions/${b}/append`, { base: 0, tokens: tokens(500, 9) });
        await pending(2);
        const busy = await call(server, "POST", `/v1/sessions/${c}/next`, { base: 0, tokens: tokens(3) });

        expect(sameSession.status).toBe(429);
        expect(sameSession.body.error.code).toBe("rate_limited");
        expect(Number(sameSession.headers.get("retry-after"))).toBe(1);
        expect(busy.status).toBe(503);
        expect(busy.body.error).toMatchObject({ code: "rate_limited" });
        expect(busy.body.error.message).toMatch(/server is busy/);
        expect(Number(busy.headers.get("retry-after"))).toBe(1);
        expect((await longA).status).toBe(200);
        expect((await longB).status).toBe(200);
        // and once the queue drains, the refused client gets through
        expect((await call(server, "POST", `/v1/sessions/${c}/next`, { base: 0, tokens: tokens(3) })).status).toBe(200);
        expect(server.stats().statuses).toMatchObject({ 429: 1, 503: 1 });
        expect(server.stats().errors.internal ?? 0).toBe(0);
      } finally {
        await server.close();
      }
    });
  });

  describe("batching of many sessions", () => {
    it("gives every session its own prediction when 64 of them share one decode", async () => {
      // Without cloud/batching.ts this configuration got 12% of predictions from another session
      // (node-llama-cpp 3.21.1: outputs reordered by llama.cpp, read concurrently by the samplers).
      const N = 64;
      const manager = await SessionManager.create({ model, vocabSize: identity.vocabSize, maxSessions: N, contextSize: 256 });
      const records: { history: number[]; tokenId: number }[] = [];
      try {
        const ids = await Promise.all(Array.from({ length: N }, (_, i) => manager.open(`o${i}`).then((s) => s.sessionId)));
        const history: number[][] = ids.map(() => []);
        let seed = 7;
        const rnd = (k: number) => {
          seed = (seed * 1103515245 + 12345) % 2147483648;
          return seed % k;
        };
        for (let round = 0; round < 30; round++) {
          await Promise.all(
            ids.map((id, i) => {
              if (history[i].length > 200) history[i] = history[i].slice(0, rnd(20));
              // deltas of 1 to 6 tokens, sometimes after a rollback: outputs at different batch positions
              const base = history[i].length > 3 && rnd(10) < 3 ? history[i].length - 1 - rnd(3) : history[i].length;
              const delta = Array.from({ length: 1 + rnd(6) }, () => rnd(identity.vocabSize));
              history[i] = history[i].slice(0, base).concat(delta);
              const snapshot = history[i].slice();
              return manager.next(id, base, delta, 2).then((r) => records.push({ history: snapshot, tokenId: r.tokenId }));
            }),
          );
        }
      } finally {
        await manager.dispose();
      }
      // the reference: each history alone in a context of its own
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      const seq = ctx.getSequence();
      const wrong: string[] = [];
      try {
        for (const r of records) {
          await seq.eraseContextTokenRanges([{ start: 0, end: seq.nextTokenIndex }]);
          const h = r.history as Token[];
          const out = await seq.controlledEvaluate([
            ...h.slice(0, -1),
            [h[h.length - 1], { generateNext: { token: true, options: { temperature: 0 } } }],
          ]);
          const expected = out[h.length - 1]?.next.token;
          if (expected !== r.tokenId) wrong.push(`after ${h.length} tokens: ${r.tokenId}, alone ${expected}`);
        }
      } finally {
        await ctx.dispose();
      }
      expect(records).toHaveLength(30 * N);
      expect(wrong.slice(0, 10), `${wrong.length} of ${records.length} predictions differ from the same history decoded alone`).toEqual([]);
    });

    it("orders each batch by sequence and sends output tokens alone", () => {
      const item = (tokens: number, outputAt: number[]): BatchItem => ({
        tokens: Array.from({ length: tokens }, () => 1 as Token),
        logits: Array.from({ length: tokens }, (_, i) => (outputAt.includes(i) ? true : undefined)),
        evaluationPriority: 5,
      });
      expect(tokensBeforeOutput(item(5, [4]))).toBe(4); // the prefix first; the output token next time
      expect(tokensBeforeOutput(item(1, [0]))).toBe(1);
      expect(tokensBeforeOutput(item(7, []))).toBe(7);
      expect(tokensBeforeOutput(item(6, [2, 5]))).toBe(2);

      const items = [item(5, [4]), item(1, [0]), item(3, []), item(1, [0])];
      const queued = [{ sequenceId: 9 }, { sequenceId: 4 }, { sequenceId: 7 }, { sequenceId: 1 }].map((q, i) => ({
        ...q,
        tokens: items[i].tokens,
      }));
      const context = { _queuedDecodes: queued } as unknown as Parameters<typeof orderedOutputsStrategy>[0] extends () => infer C
        ? C
        : never;
      const plan = orderedOutputsStrategy(() => context)({ items, size: 512 });
      expect(plan.map((p) => [queued[items.indexOf(p.item)].sequenceId, p.processAmount])).toEqual([
        [1, 1],
        [4, 1],
        [7, 3],
        [9, 4],
      ]);
      // a small batch is shared and never goes over its size
      const small = orderedOutputsStrategy(() => context)({ items, size: 4 });
      expect(small.reduce((n, p) => n + p.processAmount, 0)).toBeLessThanOrEqual(4);
      expect(small.every((p) => p.processAmount > 0)).toBe(true);
      // if node-llama-cpp's internals change, it says so instead of guessing
      expect(() => orderedOutputsStrategy(() => undefined)({ items, size: 512 })).toThrow(/internals changed/);
    });
  });
});
