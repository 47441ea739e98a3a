/**
 * Contract tests of the serving-engine adapters against loopback servers that implement the engines'
 * request and response shapes and the behaviour that decides the token (engines.ts), backed by a real
 * model: the adapter's token must be the LLM's real greedy token, even though every fake engine here
 * applies a generation config with penalties to whatever a request leaves unset.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import { modelIdentity } from "../../inference/modelFile.js";
import type { ModelIdentity } from "../../shared/protocol.js";
import { CloudCallError, type CloudPeer } from "../../electron/engine/cloud/peer.js";
import { createCloudPeer, vocabularyProbe, type CloudKind } from "../../electron/engine/cloud/adapters/index.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { contextOverflow } from "../../electron/engine/cloud/adapters/base.js";
import { HttpError, errorMessage } from "../../shared/errors.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import { standaloneGreedy } from "../helpers/standalone.js";
import { RealBackend, startFakeEngine, type EngineDefaults, type EngineKind, type FakeEngine } from "./engines.js";

noteMissingShared("serving-engine adapter contract tests");
const KINDS: EngineKind[] = ["llama.cpp", "vllm", "sglang"];
const STEPS = 12;
/**
 * The model's generation config as each fake engine applies it to unset fields (vLLM's
 * generation_config.json, llama.cpp's GGUF general.sampling.*, SGLang's --preferred-sampling-params).
 * Qwen2.5-Instruct ships repetition_penalty 1.05; a stronger one makes the tiny model's tokens change
 * within a few steps, so a request that leaves the penalty unset fails these tests.
 */
const GENERATION_CONFIG: EngineDefaults = { repetitionPenalty: 1.5, frequencyPenalty: 0.5, presencePenalty: 0.5 };
/** its greedy continuation repeats tokens within 12 steps, so a penalty changes it (SGLang's too, which penalises only the output) */
const PROMPT = "Tom and Sue went to the park. They";
/** vLLM's KV block size: its prefix cache reuses whole blocks only */
const BLOCK = 16;

describe.skipIf(!hasStories)("serving-engine adapters (real stories260K LLM behind each engine's shape)", () => {
  let backend: RealBackend;
  let llmFile: string;
  let device: ModelIdentity;
  let prompt: number[];
  let reference: number[];
  const engines = new Map<EngineKind, FakeEngine>();

  beforeAll(async () => {
    const f = await ensureFixtures();
    llmFile = f.storiesLlm!;
    backend = await RealBackend.load(llmFile);
    device = modelIdentity(backend.model);
    const bos = backend.model.tokens.bos;
    prompt = [...(bos !== null ? [bos] : []), ...backend.model.tokenize(PROMPT, false)];
    reference = await standaloneGreedy(llmFile, prompt, STEPS);
    for (const k of KINDS)
      engines.set(k, await startFakeEngine(k, backend, { defaults: GENERATION_CONFIG, promptTokensDetails: true, blockSize: BLOCK }));
  });
  afterAll(async () => {
    for (const e of engines.values()) await e.close();
    await backend?.dispose();
  });

  const probe = () => vocabularyProbe((t) => backend.model.tokenize(t, false));
  const peerFor = (kind: EngineKind, extra: Record<string, unknown> = {}): CloudPeer =>
    // deadline: well under the fake's "slow" delay (SLOW_REPLY_MS) but far above a loaded machine's reply time
    createCloudPeer({ kind, url: engines.get(kind)!.url, topK: 3, probe: probe(), deadlineMs: 1000, backoffMs: 1, ...extra } as never);

  for (const kind of KINDS) {
    describe(kind, () => {
      it("greedy decoding through the adapter equals the LLM's own greedy decoding", async () => {
        expect(reference.length).toBe(STEPS);
        expect(new Set(reference).size).toBeGreaterThan(3); // a real continuation, not one repeated token
        const peer = peerFor(kind);
        await peer.connect(device);
        const engine = engines.get(kind)!;
        engine.requests.length = 0;
        const history = [...prompt];
        const got: number[] = [];
        const evaluated: Array<number | undefined> = [];
        for (let i = 0; i < STEPS; i++) {
          const s = await peer.next(history);
          expect(s.top.length).toBe(3);
          expect(s.top[0]!.tokenId).toBe(s.tokenId);
          expect(s.logprob).toBeCloseTo(s.top[0]!.logprob, 6);
          got.push(s.tokenId);
          evaluated.push(s.evaluated);
          history.push(s.tokenId);
        }
        expect(got).toEqual(reference);
        // the prefix cache: after the first call each call evaluates only the one new token; vLLM's
        // caches whole blocks, so it recomputes the partial block the new token lands in
        const lengths = got.map((_, i) => prompt.length + i);
        const want = lengths.map((n) => (kind === "vllm" ? n - BLOCK * Math.floor((n - 1) / BLOCK) : 1));
        expect(evaluated.slice(1), "evaluated per call").toEqual(want.slice(1));
        // the documented request shape went out, every sampling parameter set
        const r = engine.requests[0]!;
        if (kind === "llama.cpp") {
          expect(r).toMatchObject({ prompt, n_predict: 1, cache_prompt: true, n_probs: 3, temperature: 0, return_tokens: true });
          expect(r).toMatchObject({
            samplers: ["temperature"],
            repeat_penalty: 1,
            repeat_last_n: 0,
            presence_penalty: 0,
            frequency_penalty: 0,
            dry_multiplier: 0,
            post_sampling_probs: false,
          });
        }
        if (kind === "vllm") {
          expect(r).toMatchObject({
            model: "stories-llm",
            prompt,
            max_tokens: 1,
            temperature: 0,
            logprobs: 3,
            return_tokens_as_token_ids: true,
            return_token_ids: true,
          });
          expect(r).toMatchObject({ repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0, top_p: 1, top_k: -1, min_p: 0 });
        }
        if (kind === "sglang") {
          expect(r).toMatchObject({
            input_ids: prompt,
            sampling_params: { max_new_tokens: 1, temperature: 0 },
            return_logprob: true,
            top_logprobs_num: 3,
          });
          expect(r.sampling_params).toMatchObject({
            repetition_penalty: 1,
            presence_penalty: 0,
            frequency_penalty: 0,
            top_p: 1,
            top_k: -1,
            min_p: 0,
            min_new_tokens: 0,
          });
        }
        expect(peer.stats.calls).toBe(STEPS);
        expect(peer.state).toBe("online");
      });

      it("a continuation (draft): one request for 1 + n tokens, the LLM's greedy tokens after the first", async () => {
        const peer = peerFor(kind);
        await peer.connect(device);
        const engine = engines.get(kind)!;
        engine.requests.length = 0;
        const s = await peer.next(prompt, undefined, { draft: 4 });
        expect([s.tokenId, ...(s.draft ?? [])]).toEqual(reference.slice(0, 5));
        expect(engine.requests).toHaveLength(1);
        const r = engine.requests[0]!;
        if (kind === "llama.cpp") expect(r).toMatchObject({ n_predict: 5 });
        if (kind === "vllm") expect(r).toMatchObject({ max_tokens: 5 });
        if (kind === "sglang") expect(r).toMatchObject({ sampling_params: { max_new_tokens: 5 } });
        // none asked for, none returned
        expect((await peer.next(prompt)).draft).toBeUndefined();
        // a long continuation: SGLang penalises only the output, so only its repeats show a penalty
        const long = await peer.next(prompt, undefined, { draft: STEPS - 1 });
        expect([long.tokenId, ...(long.draft ?? [])]).toEqual(reference);
      });

      it("the fake applies its generation config where a request leaves a field unset (the tests above have teeth)", async () => {
        // what a client that sets only the temperature gets from this engine: not the greedy tokens
        const engine = engines.get(kind)!;
        const body =
          kind === "llama.cpp"
            ? { prompt, n_predict: STEPS, temperature: 0, return_tokens: true }
            : kind === "vllm"
              ? { model: "stories-llm", prompt, max_tokens: STEPS, temperature: 0, return_token_ids: true }
              : { input_ids: prompt, sampling_params: { max_new_tokens: STEPS, temperature: 0 } };
        const path = { "llama.cpp": "/completion", vllm: "/v1/completions", sglang: "/generate" }[kind];
        const res = await fetch(engine.url + path, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        const j = (await res.json()) as { tokens?: number[]; choices?: Array<{ token_ids: number[] }>; output_ids?: number[] };
        const tokens = j.tokens ?? j.choices?.[0]?.token_ids ?? j.output_ids;
        expect(tokens).toHaveLength(STEPS);
        expect(tokens).not.toEqual(reference);
      });

      it("a conversation longer than the engine's context is a context overflow (HTTP 413 as Tandem's server), not an outage", async () => {
        const ctx = prompt.length + 4;
        const small = await startFakeEngine(kind, backend, { contextLength: ctx, defaults: GENERATION_CONFIG });
        try {
          const peer = createCloudPeer({ kind, url: small.url, probe: probe(), deadlineMs: 5000, backoffMs: 60_000 } as never);
          await peer.connect(device);
          const long = [...prompt, ...reference.slice(0, 6)];
          const err = await peer.next(long).then(
            () => null,
            (e: unknown) => e,
          );
          expect(err).toBeInstanceOf(CloudCallError);
          expect(err).toMatchObject({ reason: "http", status: 413 });
          expect(errorMessage(err)).toMatch(/context_overflow/);
          // no back-off: a conversation that fits (after the context policy drops turns) is served at once
          expect(peer.state).not.toBe("offline");
          expect((await peer.next(prompt)).tokenId).toBe(reference[0]);
          // near the end of the context a continuation is cut to what fits instead of being refused
          const near = [...prompt, ...reference.slice(0, 2)];
          const s = await peer.next(near, undefined, { draft: 8 });
          expect(s.tokenId).toBe(reference[2]);
          expect([s.tokenId, ...(s.draft ?? [])]).toEqual(reference.slice(2, 2 + 1 + (s.draft?.length ?? 0)));
          expect(near.length + 1 + (s.draft?.length ?? 0)).toBeLessThanOrEqual(ctx);
        } finally {
          await small.close();
        }
      });

      it("an API key: every endpoint the adapter calls carries it; without it the engine answers 401", async () => {
        const apiKey = "fake-engine-key-0123456789";
        const keyed = await startFakeEngine(kind, backend, { apiKey, defaults: GENERATION_CONFIG });
        try {
          const bare = createCloudPeer({ kind, url: keyed.url, probe: probe(), deadlineMs: 5000 } as never);
          await expect(bare.connect(device)).rejects.toMatchObject({ reason: "http", status: 401 });
          keyed.seen.length = 0;
          const peer = createCloudPeer({ kind, url: keyed.url, token: apiKey, probe: probe(), deadlineMs: 5000 } as never);
          await peer.connect(device);
          expect((await peer.next(prompt)).tokenId).toBe(reference[0]);
          expect(keyed.seen.length).toBeGreaterThanOrEqual(3); // model info, /tokenize, the generation
          expect(keyed.seen.filter((x) => !x.authorized)).toEqual([]);
        } finally {
          await keyed.close();
        }
      });

      for (const [fault, reason] of [
        ["garbage", "malformed"],
        ["missing", "malformed"],
        ["outOfVocab", "malformed"],
        ["disagree", "malformed"],
        ["status500", "http"],
        ["slow", "timeout"],
      ] as const) {
        it(`${fault} reply → CloudCallError(${reason}), then back-off, then recovery`, async () => {
          const peer = peerFor(kind);
          await peer.connect(device);
          const engine = engines.get(kind)!;
          engine.fault = fault;
          try {
            const err = await peer.next(prompt).then(
              () => null,
              (e: unknown) => e,
            );
            expect(err).toBeInstanceOf(CloudCallError);
            expect((err as CloudCallError).reason).toBe(reason);
            expect(peer.state).toBe("offline");
          } finally {
            engine.fault = "none";
          }
          await new Promise((r) => setTimeout(r, 5));
          expect((await peer.next(prompt)).tokenId).toBe(reference[0]);
        });
      }
    });
  }

  it("vLLM: token_ids are asked for (return_token_ids) and cross-checked; logprobs are capped at the server's 20", async () => {
    const engine = engines.get("vllm")!;
    const peer = peerFor("vllm", { topK: 50 });
    await peer.connect(device);
    engine.requests.length = 0;
    const s = await peer.next(prompt);
    expect(s.top).toHaveLength(20);
    expect(engine.requests[0]).toMatchObject({ logprobs: 20, return_token_ids: true });
    // the engine returns token_ids only when asked: the "disagree" fault above is caught through them
  });

  it("vLLM without --enable-prompt-tokens-details: the evaluated count is unknown, the token still right", async () => {
    const plain = await startFakeEngine("vllm", backend, { defaults: GENERATION_CONFIG });
    try {
      const peer = createCloudPeer({ kind: "vllm", url: plain.url, probe: probe(), deadlineMs: 5000 });
      await peer.connect(device);
      const s = await peer.next(prompt);
      expect(s.tokenId).toBe(reference[0]);
      expect(s.evaluated).toBeUndefined();
    } finally {
      await plain.close();
    }
  });

  it("SGLang: /model_info, falling back to /get_model_info on servers without it", async () => {
    for (const modelInfo of ["new", "legacy"] as const) {
      const e = await startFakeEngine("sglang", backend, { modelInfo, defaults: GENERATION_CONFIG });
      try {
        const peer = createCloudPeer({ kind: "sglang", url: e.url, probe: probe(), deadlineMs: 5000 });
        await expect(peer.connect(device), modelInfo).resolves.toMatchObject({ name: "/models/stories-llm" });
        expect((await peer.next(prompt)).tokenId).toBe(reference[0]);
      } finally {
        await e.close();
      }
    }
  });

  it("vocabulary: a different tokenisation of the probe is refused at connect", async () => {
    for (const kind of KINDS) {
      const bad = probe();
      bad.tokens[0] = (bad.tokens[0]! + 1) % device.vocabSize;
      const peer = createCloudPeer({ kind, url: engines.get(kind)!.url, probe: bad });
      await expect(peer.connect(device)).rejects.toMatchObject({ reason: "vocab_mismatch" });
    }
  });

  it("vocabulary: llama.cpp refuses a different vocabulary size even when the user confirms", async () => {
    const peer = createCloudPeer({ kind: "llama.cpp", url: engines.get("llama.cpp")!.url, assumeSameVocabulary: true });
    await expect(peer.connect({ ...device, vocabSize: device.vocabSize + 1 })).rejects.toThrow(/tokens/);
  });

  it("vocabulary: what cannot be verified needs the user's confirmation", async () => {
    for (const kind of KINDS) {
      const peer = createCloudPeer({ kind, url: engines.get(kind)!.url });
      await expect(peer.connect(device)).rejects.toThrow(/assumeSameVocabulary/);
      const ok = createCloudPeer({ kind, url: engines.get(kind)!.url, assumeSameVocabulary: true });
      await expect(ok.connect(device)).resolves.toMatchObject({ vocabSize: device.vocabSize });
    }
    // with a probe, every engine with a /tokenize endpoint verifies without the user's word
    for (const kind of KINDS) {
      const peer = createCloudPeer({ kind, url: engines.get(kind)!.url, probe: probe() });
      await expect(peer.connect(device)).resolves.toBeTruthy();
      expect((peer as unknown as { vocabularyCheck: string }).vocabularyCheck).toMatch(/^verified: probe text tokenised identically/);
    }
  });

  it("vocabulary: an engine without /tokenize cannot verify a probe and needs the user's confirmation", async () => {
    for (const kind of ["vllm", "sglang"] as const) {
      const bare = await startFakeEngine(kind, backend, { tokenize: false });
      try {
        await expect(createCloudPeer({ kind, url: bare.url, probe: probe() }).connect(device)).rejects.toThrow(
          /no \/tokenize endpoint.*assumeSameVocabulary/,
        );
        const peer = createCloudPeer({ kind, url: bare.url, probe: probe(), assumeSameVocabulary: true });
        await expect(peer.connect(device)).resolves.toBeTruthy();
        expect((peer as unknown as { vocabularyCheck: string }).vocabularyCheck).toMatch(/^confirmed by the user/);
      } finally {
        await bare.close();
      }
    }
  });

  it("vocabulary: llama.cpp accepts a size that differs only in [PAD] entries, not one that cuts real tokens", async () => {
    const n = device.vocabSize;
    const padded = await startFakeEngine("llama.cpp", backend, { reportVocab: n + 128 });
    const short = await startFakeEngine("llama.cpp", backend, { reportVocab: n - 1 });
    try {
      // the probe says the device's real tokens end at n: a server with n + 128 entries differs only in padding
      await expect(
        createCloudPeer({ kind: "llama.cpp", url: padded.url, probe: { ...probe(), paddedFrom: n } }).connect(device),
      ).resolves.toMatchObject({ vocabSize: n + 128 });
      // without knowing where the device's padding starts, any size difference is refused
      await expect(createCloudPeer({ kind: "llama.cpp", url: padded.url, probe: probe() }).connect(device)).rejects.toMatchObject({
        reason: "vocab_mismatch",
      });
      // fewer entries than the device's real tokens: refused even with the padding boundary
      await expect(
        createCloudPeer({ kind: "llama.cpp", url: short.url, probe: { ...probe(), paddedFrom: n } }).connect(device),
      ).rejects.toThrow(/tokens/);
    } finally {
      await padded.close();
      await short.close();
    }
  });

  it("unreachable engine → CloudCallError(unreachable)", async () => {
    const peer = createCloudPeer({ kind: "vllm", url: "http://127.0.0.1:1", assumeSameVocabulary: true });
    await expect(peer.connect(device)).rejects.toMatchObject({ reason: "unreachable" });
  });
});

describe("context overflow in each engine's words", () => {
  // the messages as the engines' source words them (docs/deploy-gpu.md, versions checked)
  const cases: Array<[string, number, string, number | undefined]> = [
    [
      "llama.cpp",
      400,
      JSON.stringify({
        error: {
          code: 400,
          message: "request (40 tokens) exceeds the available context size (32 tokens), try increasing it",
          type: "exceed_context_size_error",
          n_prompt_tokens: 40,
          n_ctx: 32,
        },
      }),
      32,
    ],
    [
      "vLLM",
      400,
      JSON.stringify({
        error: {
          message:
            "You passed 40 input tokens and requested 1 output tokens. However, the model's context length is only 32 tokens, resulting in a maximum input length of 31 tokens. Please reduce the length of the input prompt.",
          type: "BadRequestError",
          param: "input_tokens",
          code: 400,
        },
      }),
      32,
    ],
    [
      "vLLM, older",
      400,
      JSON.stringify({
        object: "error",
        message:
          "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4999 in the messages, 1 in the completion).",
        type: "BadRequestError",
        code: 400,
      }),
      4096,
    ],
    [
      "vLLM V1 engine",
      400,
      JSON.stringify({
        error: {
          message:
            "The decoder prompt (length 5000) is longer than the maximum model length of 4096. Make sure that `max_model_len` is no smaller than the number of text tokens.",
        },
      }),
      4096,
    ],
    [
      "SGLang",
      400,
      JSON.stringify({ error: { message: "The input (40 tokens) is longer than the model's context length (32 tokens)." } }),
      32,
    ],
    [
      "SGLang, prompt plus completion",
      400,
      JSON.stringify({
        error: {
          message:
            "Requested token count exceeds the model's maximum context length of 32 tokens. You requested a total of 41 tokens: 40 tokens from the input messages and 1 tokens for the completion.",
        },
      }),
      32,
    ],
  ];
  it.each(cases)("%s: recognised, with the context length it states", (_, status, body, n) => {
    expect(contextOverflow(new HttpError(status, body))).toEqual(n === undefined ? {} : { contextLength: n });
  });
  it("other refusals are not overflows", () => {
    expect(
      contextOverflow(
        new HttpError(
          400,
          JSON.stringify({ error: { message: "Requested sample logprobs of 50, which is greater than max allowed: 20" } }),
        ),
      ),
    ).toBeNull();
    expect(contextOverflow(new HttpError(500, "context length exceeded"))).toBeNull();
    expect(contextOverflow(new HttpError(401, JSON.stringify({ error: "Unauthorized" })))).toBeNull();
  });
});

describe("createCloudPeer", () => {
  it("selects the peer by kind and rejects an unknown kind", () => {
    const kinds: Record<CloudKind, string> = { tandem: "tandem", "llama.cpp": "llama.cpp", vllm: "vllm", sglang: "sglang" };
    for (const [kind, expected] of Object.entries(kinds)) {
      const p = createCloudPeer({ kind: kind as CloudKind, url: "http://127.0.0.1:9" } as never);
      expect(p.kind).toBe(expected);
    }
    expect(createCloudPeer({ kind: "tandem", url: "http://127.0.0.1:9" })).toBeInstanceOf(TandemCloudClient);
    expect(() => createCloudPeer({ kind: "triton", url: "http://x" } as never)).toThrow(/Unknown cloud kind/);
    expect(() => createCloudPeer({ kind: "vllm", url: "ftp://x" })).toThrow(/http/);
  });
});
