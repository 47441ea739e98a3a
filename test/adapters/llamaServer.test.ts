/**
 * llama.cpp's own server (`llama-server`, built from node-llama-cpp's llama.cpp bundle by
 * `npm run llama-server:build`) as Tandem's cloud: the adapter against the real engine, not a fake of
 * its documented shape. Skips, saying how to build it, when the binary is absent.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import type { TokenEvent } from "../../shared/events.js";
import { getTandemLlama } from "../../inference/llama.js";
import { modelIdentity } from "../../inference/modelFile.js";
import type { ModelIdentity } from "../../shared/protocol.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { LocalModel } from "../../inference/localModel.js";
import { CloudCallError } from "../../electron/engine/cloud/peer.js";
import { createCloudPeer, vocabularyProbe } from "../../electron/engine/cloud/adapters/index.js";
import { LlamaCppServerPeer } from "../../electron/engine/cloud/adapters/llamaCppServer.js";
import { contextOverflow } from "../../electron/engine/cloud/adapters/base.js";
import { HttpError } from "../../shared/errors.js";
import { runCloudCheck, type CloudCheckReport } from "../../electron/engine/cloud/adapters/vocabCheck.js";
import { deviceVocabulary, type DeviceVocabulary } from "../../electron/engine/cloud/adapters/vocabulary.js";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";
import { standaloneGreedy } from "../helpers/standalone.js";
import { RealBackend } from "./engines.js";
import {
  hasLlamaServer,
  llamaServerBin,
  llamaServerRequired,
  noteMissingLlamaServer,
  startLlamaServer,
  type LlamaServer,
} from "./llamaServerProcess.js";
import { writePaddedVocabulary, writeSamplingDefaults } from "./vocabFixtures.js";

noteMissingShared("llama-server tests");
noteMissingLlamaServer("llama-server tests");

describe.runIf(llamaServerRequired)("llama-server required (TANDEM_REQUIRE_LLAMA_SERVER=1)", () => {
  it("the binary exists", () => {
    expect(hasLlamaServer, `${llamaServerBin} not found: run \`npm run llama-server:build\``).toBe(true);
  });
});

/** cloud:check's report when the endpoint matches the device in every way it can check */
const EVERY_CHECK_PASSES = {
  "vocabulary size": "PASS",
  "text probes": "PASS",
  "special tokens": "PASS",
  "token IDs": "PASS",
  "next token": "PASS",
  "sampling defaults": "PASS",
};

const PROMPTS = ["Once upon a time", "The little dog", "Tom and Sue went to the park. They"];

describe.skipIf(!hasStories || !hasLlamaServer)("llama.cpp's own server (llama-server) as the cloud", () => {
  let files: Awaited<ReturnType<typeof ensureFixtures>>;
  let server: LlamaServer;
  /** the LLM itself through node-llama-cpp: the reference for every token */
  let reference: RealBackend;
  let device: ModelIdentity;
  let tokenize: (text: string) => number[];

  beforeAll(async () => {
    files = await ensureFixtures();
    server = await startLlamaServer(files.storiesLlm!);
    reference = await RealBackend.load(files.storiesLlm!);
    device = modelIdentity(reference.model);
    const bos = reference.model.tokens.bos;
    tokenize = (text) => [...(bos !== null ? [bos] : []), ...reference.model.tokenize(text, false)];
  });
  afterAll(async () => {
    await server?.close();
    await reference?.dispose();
  });

  const peer = (extra: Partial<ConstructorParameters<typeof LlamaCppServerPeer>[0]> = {}) =>
    new LlamaCppServerPeer({
      url: server.url,
      topK: 5,
      probe: vocabularyProbe((t) => reference.model.tokenize(t, false)),
      deadlineMs: 10_000,
      ...extra,
    });

  it("the adapter's token is the LLM's greedy token for the same prefix, with a sane log-probability", async () => {
    const p = peer();
    await expect(p.connect(device)).resolves.toMatchObject({ name: expect.any(String), vocabSize: 512 });
    expect(p.vocabularyCheck).toMatch(/^verified: probe text tokenised identically/);
    // several prefixes, including ones that share a start (the slot's cache must not leak between them)
    const prefixes = [...PROMPTS.map(tokenize), tokenize("Once upon a time, there was a little"), tokenize("Once")];
    for (const prefix of prefixes) {
      const want = await reference.predict(prefix, 5);
      const got = await p.next(prefix);
      expect(got.tokenId, server.log().slice(-2000)).toBe(want.token);
      // the log-probability of the greedy token: finite, ≤ 0, the top candidate's, and node-llama-cpp's own
      expect(Number.isFinite(got.logprob)).toBe(true);
      expect(got.logprob).toBeLessThanOrEqual(0);
      expect(got.top.length).toBe(5);
      expect(got.top[0]!.tokenId).toBe(got.tokenId);
      expect(got.top[0]!.logprob).toBeCloseTo(got.logprob!, 6);
      for (let i = 1; i < got.top.length; i++) expect(got.top[i]!.logprob).toBeLessThanOrEqual(got.top[i - 1]!.logprob);
      expect(got.logprob).toBeCloseTo(want.logprob, 3);
      expect(got.top.map((c) => c.tokenId)).toEqual(want.top.map((c) => c.id));
    }
  });

  it("the slot's prompt cache: the second call evaluates only the new token (raw fields and the adapter's count)", async () => {
    const prompt = tokenize("Lily and Ben were best friends. One day they");
    const completion = async (ids: number[]) => {
      const res = await fetch(`${server.url}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          prompt: ids,
          n_predict: 1,
          cache_prompt: true,
          n_probs: 1,
          temperature: 0,
          return_tokens: true,
          id_slot: 0,
        }),
      });
      expect(res.status).toBe(200);
      return (await res.json()) as {
        tokens: number[];
        tokens_cached: number;
        tokens_evaluated: number;
        timings: { prompt_n: number; cache_n: number };
      };
    };
    // a different conversation first, so nothing of `prompt` is cached
    await completion(tokenize("Zebras"));
    const first = await completion(prompt);
    const second = await completion([...prompt, first.tokens[0]!]);
    // tokens_evaluated counts the whole prompt; timings.prompt_n the tokens actually computed,
    // timings.cache_n those reused from the slot
    expect(first.tokens_evaluated).toBe(prompt.length);
    expect(first.timings.prompt_n).toBeGreaterThanOrEqual(prompt.length - 1); // "Zebras" shares at most the BOS
    expect(second.tokens_evaluated).toBe(prompt.length + 1);
    expect(second.timings.prompt_n).toBe(1);
    expect(second.timings.cache_n).toBe(prompt.length);
    // tokens_cached: what the slot holds after the call: the prompt (the sampled token is not evaluated)
    expect(second.tokens_cached).toBe(prompt.length + 1);

    // the adapter reports timings.prompt_n as `evaluated`
    const p = peer({ slot: 0 });
    await p.connect(device);
    const a = await p.next(tokenize("The sun was shining and"));
    const b = await p.next([...tokenize("The sun was shining and"), a.tokenId]);
    expect(a.evaluated).toBeGreaterThan(1);
    expect(b.evaluated).toBe(1);
  });

  it("two conversations pinned to two slots (id_slot) keep their caches: each call evaluates only its delta", async () => {
    const two = await startLlamaServer(files.storiesLlm!, { parallel: 2 });
    try {
      const probe = vocabularyProbe((t) => reference.model.tokenize(t, false));
      const peers = [0, 1].map((slot) => new LlamaCppServerPeer({ url: two.url, slot, probe, deadlineMs: 10_000 }));
      for (const p of peers) await p.connect(device);
      const histories = [tokenize("Once upon a time"), tokenize("The little dog ran to the")];
      const evaluated: number[][] = [[], []];
      for (let step = 0; step < 6; step++) {
        for (const i of [0, 1]) {
          const s = await peers[i]!.next(histories[i]!);
          evaluated[i]!.push(s.evaluated!);
          histories[i]!.push(s.tokenId);
        }
      }
      expect(evaluated.map((e) => e.slice(1))).toEqual([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
      ]);
      for (const i of [0, 1]) {
        const start = i === 0 ? "Once upon a time" : "The little dog ran to the";
        expect(histories[i]!.slice(tokenize(start).length)).toEqual(await standaloneGreedy(files.storiesLlm!, tokenize(start), 6));
      }
    } finally {
      await two.close();
    }
  });

  it("the routed decoder at τ = 1 through the adapter reproduces the LLM's standalone greedy output", async () => {
    const slm = await LocalModel.load(files.storiesSlm!, { contextSize: 1024 });
    try {
      const p = createCloudPeer({
        kind: "llama.cpp",
        url: server.url,
        probe: vocabularyProbe((t) => slm.model.tokenize(t, false)),
        deadlineMs: 10_000,
      });
      await p.connect(slm.identity);
      const dec = new CollaborativeDecoder(slm, new ConfidenceRouter(), p);
      for (const text of PROMPTS) {
        const prompt = slm.tokenizeText(text);
        const events: TokenEvent[] = [];
        const answer = dec.generate(prompt, { tau: 1, maxTokens: 24 });
        for await (const e of answer) events.push(e);
        const want = await standaloneGreedy(files.storiesLlm!, prompt, 24);
        expect(want.length).toBeGreaterThan(5);
        expect(events.map((e) => e.tokenId)).toEqual(want);
        expect(events.every((e) => e.origin === "cloud")).toBe(true);
        // every position routed and no pipelined calls: after the first call each one brings a
        // continuation (n_predict 1 + 4), so most tokens come without a call of their own
        const drafted: TokenEvent[] = [];
        for await (const e of dec.generate(prompt, { tau: 1, maxTokens: 24, pipeline: false })) drafted.push(e);
        expect(drafted.map((e) => e.tokenId)).toEqual(want);
        expect(drafted.filter((e) => e.cloud?.fromDraft).length).toBeGreaterThan(drafted.length / 2);
      }
    } finally {
      await slm.dispose();
    }
  });

  it("the terminal chat with --cloud-kind llama.cpp: every token from the server at τ = 1, the LLM's greedy text", async () => {
    const prompt = "Once upon a time";
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(repoRoot, "cli", "chat.ts"),
        "--slm",
        files.storiesSlm!,
        "--cloud",
        server.url,
        "--cloud-kind",
        "llama.cpp",
        "--tau",
        "1",
        "--max-tokens",
        "16",
        "--preset",
        "precise", // greedy: compared with the LLM's greedy text
        "--json",
        prompt,
      ],
      { cwd: repoRoot, timeout: 120_000 },
    );
    const lines = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { tokenId?: number; origin?: string; summary?: { cloudTokens: number; tokens: number } });
    const summary = lines.pop()!.summary!;
    expect(summary.tokens).toBeGreaterThan(5);
    expect(summary.cloudTokens).toBe(summary.tokens);
    const slm = await LocalModel.load(files.storiesSlm!, { contextSize: 256 });
    try {
      const want = await standaloneGreedy(files.storiesLlm!, slm.tokenizeText(prompt), lines.length);
      expect(lines.map((l) => l.tokenId)).toEqual(want.slice(0, lines.length));
    } finally {
      await slm.dispose();
    }
  });

  it("a GGUF whose general.sampling.penalty_repeat is 1.5: the server takes it as its default, and the adapter still gets the LLM's greedy tokens", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandem-llama-penalty-"));
    const file = path.join(dir, "stories-llm-penalty.gguf");
    await writeSamplingDefaults(files.storiesLlm!, file, { penaltyRepeat: 1.5 });
    const penalised = await startLlamaServer(file);
    try {
      const props = (await (await fetch(`${penalised.url}/props`)).json()) as {
        default_generation_settings: { params: { repeat_penalty: number } };
      };
      expect(props.default_generation_settings.params.repeat_penalty).toBeCloseTo(1.5, 5);
      const prompt = tokenize("Tom and Sue went to the park. They");
      const want = await standaloneGreedy(files.storiesLlm!, prompt, 12);
      expect(want).toHaveLength(12);
      // a client that sets only the temperature gets the penalised continuation: the test has teeth
      const res = await fetch(`${penalised.url}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt, n_predict: 12, temperature: 0, return_tokens: true }),
      });
      expect(((await res.json()) as { tokens: number[] }).tokens).not.toEqual(want);
      // the adapter: token by token, and as one continuation
      const p = new LlamaCppServerPeer({
        url: penalised.url,
        probe: vocabularyProbe((t) => reference.model.tokenize(t, false)),
        deadlineMs: 10_000,
      });
      await p.connect(device);
      const history = [...prompt];
      for (let i = 0; i < want.length; i++) history.push((await p.next(history)).tokenId);
      expect(history.slice(prompt.length)).toEqual(want);
      const c = await p.next(prompt, undefined, { draft: want.length - 1 });
      expect([c.tokenId, ...(c.draft ?? [])]).toEqual(want);
      // cloud:check says so
      const check = await runCloudCheck({ kind: "llama.cpp", url: penalised.url, device: deviceVocabulary(reference.model) });
      expect(check.checks.find((x) => x.name === "sampling defaults")).toMatchObject({
        status: "WARN",
        detail: expect.stringMatching(/repeat_penalty 1\.5/),
      });
    } finally {
      await penalised.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a conversation longer than the slot's context: a context overflow (413, no back-off), then served again", async () => {
    const small = await startLlamaServer(files.storiesLlm!, { contextSize: 256 });
    try {
      // the slot's context as the server reports it (llama.cpp may round the -c it was given)
      const models = (await (await fetch(`${small.url}/v1/models`)).json()) as { data: Array<{ meta: { n_ctx: number } }> };
      const nCtx = models.data[0]!.meta.n_ctx;
      const sentence = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. ";
      const long = tokenize(sentence.repeat(Math.ceil((nCtx + 8) / 20)));
      expect(long.length).toBeGreaterThan(nCtx);
      // the engine's own answer: 400 exceed_context_size_error, which the adapters read as an overflow
      const res = await fetch(`${small.url}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: long, n_predict: 1 }),
      });
      expect(res.status).toBe(400);
      expect(contextOverflow(new HttpError(res.status, await res.text()))).toEqual({ contextLength: nCtx });
      const p = new LlamaCppServerPeer({
        url: small.url,
        probe: vocabularyProbe((t) => reference.model.tokenize(t, false)),
        deadlineMs: 10_000,
        backoffMs: 60_000,
      });
      await p.connect(device);
      await expect(p.next(long)).rejects.toMatchObject({ reason: "http", status: 413, message: expect.stringMatching(/context_overflow/) });
      expect(p.state).not.toBe("offline");
      const prompt = tokenize("Once upon a time");
      expect((await p.next(prompt)).tokenId).toBe((await reference.predict(prompt, 1)).token);
    } finally {
      await small.close();
    }
  });

  it("an API key: refused without it (HTTP 401, no back-off for a client error), served with it", async () => {
    const apiKey = "tandem-test-key-0123456789";
    const keyed = await startLlamaServer(files.storiesLlm!, { apiKey });
    try {
      const bare = new LlamaCppServerPeer({ url: keyed.url, assumeSameVocabulary: true, deadlineMs: 10_000 });
      const err = await bare.connect(device).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CloudCallError);
      expect(err).toMatchObject({ reason: "http", status: 401 });
      const withKey = new LlamaCppServerPeer({
        url: keyed.url,
        token: apiKey,
        probe: vocabularyProbe((t) => reference.model.tokenize(t, false)),
        deadlineMs: 10_000,
      });
      await withKey.connect(device);
      const prompt = tokenize("Once upon a time");
      expect((await withKey.next(prompt)).tokenId).toBe((await reference.predict(prompt, 1)).token);
    } finally {
      await keyed.close();
    }
  });

  describe("cloud:check against the real server", () => {
    const models: LlamaModel[] = [];
    let tmp: string;
    let slmVocab: DeviceVocabulary;
    const vocabOf = async (file: string) => {
      const m = await (await getTandemLlama()).loadModel({ modelPath: file, vocabOnly: true });
      models.push(m);
      return deviceVocabulary(m);
    };
    const statuses = (r: CloudCheckReport) => Object.fromEntries(r.checks.map((c) => [c.name, c.status]));
    beforeAll(async () => {
      tmp = await mkdtemp(path.join(tmpdir(), "tandem-llama-server-"));
      slmVocab = await vocabOf(files.storiesSlm!);
    });
    afterAll(async () => {
      for (const m of models) await m.dispose();
      if (tmp) await rm(tmp, { recursive: true, force: true });
    });

    it("the stories SLM against the server with the stories LLM: every check PASSes", async () => {
      const r = await runCloudCheck({ kind: "llama.cpp", url: server.url, device: slmVocab });
      expect(statuses(r), JSON.stringify(r.checks, null, 1)).toEqual(EVERY_CHECK_PASSES);
      expect(r.result).toBe("PASS");
      // the second call of the next-token check evaluated one token: the prefix cache is in use
      expect(r.checks.find((c) => c.name === "next token")!.detail).toMatch(/the second call evaluated 1 of \d+ tokens/);
    });

    it("the same SLM padded with [PAD] entries: size WARN, every probe PASSes", async () => {
      const file = path.join(tmp, "stories-slm-padded.gguf");
      await writePaddedVocabulary(files.storiesSlm!, file, 640);
      const r = await runCloudCheck({ kind: "llama.cpp", url: server.url, device: await vocabOf(file) });
      expect(statuses(r)).toMatchObject({ "vocabulary size": "WARN", "text probes": "PASS", "token IDs": "PASS", "next token": "PASS" });
      expect(r.result).toBe("PASS");
    });

    it("the real Qwen2 vocabulary (random-weight pair): every probe PASSes, and a device padded to 152,064 entries WARNs on size only", async () => {
      const qwen = await startLlamaServer(files.randB);
      try {
        const device = await vocabOf(files.randA);
        expect(device.specials.map((x) => x.text)).toEqual(expect.arrayContaining(["<|im_start|>", "<|im_end|>", "<|endoftext|>"]));
        const r = await runCloudCheck({ kind: "llama.cpp", url: qwen.url, device });
        expect(statuses(r), JSON.stringify(r.checks, null, 1)).toEqual(EVERY_CHECK_PASSES);
        // the device GGUF padded as a Qwen2.5 7B–72B GGUF is, the server's as a 0.5B–3B one
        const file = path.join(tmp, "rand-qwen2-a-padded.gguf");
        await writePaddedVocabulary(files.randA, file, 152_064);
        const r2 = await runCloudCheck({ kind: "llama.cpp", url: qwen.url, device: await vocabOf(file) });
        expect(statuses(r2)).toEqual({ ...EVERY_CHECK_PASSES, "vocabulary size": "WARN" });
        expect(r2.checks[0]!.detail).toMatch(/device 152064 entries, server 151936/);
        expect(r2.result).toBe("PASS");
      } finally {
        await qwen.close();
      }
    });

    it("a GPT-2-vocabulary device against the stories server: FAIL", async () => {
      const r = await runCloudCheck({ kind: "llama.cpp", url: server.url, device: await vocabOf(files.randGpt2) });
      expect(statuses(r)).toMatchObject({ "vocabulary size": "FAIL", "text probes": "FAIL", "token IDs": "FAIL" });
      expect(r.result).toBe("FAIL");
    });

    it("llama-server serving rand-gpt2 against the stories SLM: FAIL, and the adapter refuses to connect", async () => {
      const gpt2 = await startLlamaServer(files.randGpt2);
      try {
        const r = await runCloudCheck({ kind: "llama.cpp", url: gpt2.url, device: slmVocab });
        const s = statuses(r);
        // 50,257 entries ≥ the device's 512: on size alone it could be padding; the probes show it is not
        expect(s).toMatchObject({ "vocabulary size": "WARN", "text probes": "FAIL", "token IDs": "FAIL", "next token": "FAIL" });
        expect(r.result).toBe("FAIL");
        const p = createCloudPeer({ kind: "llama.cpp", url: gpt2.url, probe: slmVocab.probe });
        await expect(p.connect(slmVocab.identity)).rejects.toMatchObject({ reason: "vocab_mismatch" });
      } finally {
        await gpt2.close();
      }
    });
  });
});
