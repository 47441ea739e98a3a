/**
 * A failing cloud never fails the answer: refused, killed mid-answer, slow, HTTP 500, garbage JSON,
 * out-of-vocabulary tokens — every answer completes, each failed call yields the SLM's own token
 * marked `fallback`, and nothing is left as an unhandled rejection. Also: a lost session is
 * re-created and re-synced, and abort stops within one token.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { CloudCallError } from "../../electron/engine/cloud/peer.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { CollaborativeDecoder, type GenerateOptions } from "../../electron/engine/decoder.js";
import { LocalModel } from "../../inference/localModel.js";
import { startFaultProxy, type Fault, type FaultProxy } from "../../bench/faultProxy.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";
import { standaloneGreedy, teacherForcedGreedy } from "../helpers/standalone.js";
import { startCloudProcess } from "../helpers/cloudProcess.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const TOKEN = "test-token-0123456789";
const MAX = 24;

describe("cloud faults", () => {
  let files: PairFiles;
  let slm: LocalModel;
  let server: CloudServer;
  let proxy: FaultProxy;
  let prompt: number[];
  let slmGreedy: number[];
  let llmGreedy: number[];

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    slm = await LocalModel.load(files.slm, { contextSize: 512 });
    server = await startCloudServer({ modelPath: files.llm, host: "127.0.0.1", port: 0, token: TOKEN });
    proxy = await startFaultProxy(server.url);
    prompt = slm.tokenizeText("Once upon a time");
    slmGreedy = await standaloneGreedy(files.slm, prompt, MAX);
    llmGreedy = await standaloneGreedy(files.llm, prompt, MAX);
  });
  afterAll(async () => {
    await proxy?.close();
    await server?.close();
    await slm?.dispose();
  });
  afterEach(() => {
    proxy.fault = { kind: "pass" };
    expect(unhandled).toEqual([]);
  });

  async function run(
    client: TandemCloudClient | null,
    opts: Partial<GenerateOptions> = {},
    onEvent?: (e: TokenEvent) => Promise<void> | void,
  ) {
    const dec = new CollaborativeDecoder(slm, new ConfidenceRouter(), client);
    const events: TokenEvent[] = [];
    const answer = dec.generate(prompt, { tau: 1, maxTokens: MAX, ...opts });
    for await (const e of answer) {
      events.push(e);
      await onEvent?.(e);
    }
    return { events, summary: await answer.summary };
  }

  async function proxiedClient(deadlineMs = 400) {
    const c = new TandemCloudClient({ url: proxy.url, token: TOKEN, deadlineMs });
    await c.connect(slm.identity);
    return c;
  }

  it.each<[string, Fault]>([
    ["slower than the deadline", { kind: "delay", ms: 1200 }],
    ["HTTP 500", { kind: "status", status: 500 }],
    ["garbage JSON", { kind: "garbage" }],
    ["connection reset", { kind: "reset" }],
    ["a token outside the vocabulary", { kind: "rewrite", body: (j) => ({ ...j, tokenId: 10_000_000 }) }],
    ["a wrong length (a reply for another session)", { kind: "rewrite", body: (j) => ({ ...j, length: 3 }) }],
  ])("%s: the answer completes with fallback tokens — the SLM's own", async (_name, fault) => {
    const client = await proxiedClient();
    proxy.fault = fault;
    const { events, summary } = await run(client);
    expect(events.map((e) => e.tokenId)).toEqual(slmGreedy);
    expect(events.every((e) => e.origin === "fallback" && e.fallbackReason)).toBe(true);
    expect(summary.fallbackTokens).toBe(events.length);
    expect(client.state).toBe("offline");
  });

  it("refused connection: a clear error at connect, then every routed token falls back", async () => {
    const dead = await startCloudServer({ modelPath: files.llm, host: "127.0.0.1", port: 0, token: TOKEN });
    const url = dead.url;
    await dead.close();
    const client = new TandemCloudClient({ url, token: TOKEN });
    await expect(client.connect(slm.identity)).rejects.toMatchObject({ reason: "unreachable" });
    const { events } = await run(client);
    expect(events.map((e) => e.tokenId)).toEqual(slmGreedy);
    expect(events.every((e) => e.origin === "fallback")).toBe(true);
  });

  it("wrong bearer token: refused with a clear error", async () => {
    const client = new TandemCloudClient({ url: server.url, token: "wrong" });
    const err = await client.connect(slm.identity).catch((e) => e);
    expect(err).toBeInstanceOf(CloudCallError);
    expect(err.message).toMatch(/401/);
  });

  it("a lost session (server restarted between tokens) is re-created and re-synced", async () => {
    const own = await startCloudServer({ modelPath: files.llm, host: "127.0.0.1", port: 0, token: TOKEN });
    const port = new URL(own.url).port;
    let current = own;
    const client = new TandemCloudClient({ url: own.url, token: TOKEN });
    await client.connect(slm.identity);
    const { events } = await run(client, {}, async (e) => {
      if (e.index === 5) {
        await current.close();
        current = await startCloudServer({ modelPath: files.llm, host: "127.0.0.1", port: Number(port), token: TOKEN });
      }
    });
    await current.close();
    expect(events.every((e) => e.origin === "cloud")).toBe(true);
    expect(events.map((e) => e.tokenId)).toEqual(llmGreedy);
    expect(client.stats.sessions).toBe(2);
  });

  it("cloud process killed mid-answer: the answer completes, cloud tokens before, fallback after", async () => {
    const proc = await startCloudProcess(files.llm, TOKEN);
    const client = new TandemCloudClient({ url: proc.url, token: TOKEN, deadlineMs: 1000 });
    await client.connect(slm.identity);
    const { events } = await run(client, { tau: 0.6 }, async (e) => {
      if (e.index === 8) await proc.kill();
    });
    const before = events.filter((e) => e.index <= 8);
    const after = events.filter((e) => e.index > 8);
    expect(before.some((e) => e.origin === "cloud")).toBe(true);
    expect(after.some((e) => e.origin === "fallback")).toBe(true);
    expect(after.some((e) => e.origin === "cloud")).toBe(false);
    // every origin is truthful: check each token against both models on the committed prefix
    const seq = [...prompt, ...events.map((e) => e.tokenId)];
    const s = await teacherForcedGreedy(files.slm, seq, prompt.length);
    const l = await teacherForcedGreedy(files.llm, seq, prompt.length);
    events.forEach((e, i) => expect(e.tokenId).toBe(e.origin === "cloud" ? l[i] : s[i]));
    expect(events.length).toBe(MAX);
  });

  it("abort while waiting on a slow cloud ends the answer within one token", async () => {
    const client = await proxiedClient(10_000);
    proxy.fault = { kind: "delay", ms: 3000 };
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(), 150);
    const { events, summary } = await run(client, { signal: ac.signal });
    const elapsed = performance.now() - t0;
    expect(events).toEqual([]);
    expect(summary.stopReason).toBe("abort");
    expect(elapsed).toBeLessThan(1000);
  });

  it("abort during local decoding: no token after the abort", async () => {
    const ac = new AbortController();
    const { events, summary } = await run(null, { tau: 0, signal: ac.signal, maxTokens: 200 }, (e) => {
      if (e.index === 3) ac.abort();
    });
    expect(events.length).toBe(4);
    expect(summary.stopReason).toBe("abort");
  });
});
