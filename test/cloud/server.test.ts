/**
 * The cloud token server against a real model (stories260K) over real HTTP on 127.0.0.1.
 * Predictions are checked against a standalone greedy run of the same model in its own context.
 */
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { getTandemLlama } from "../../inference/llama.js";
import { loadModelFile, modelIdentity } from "../../inference/modelFile.js";
import { PROTOCOL_LIMITS, PROTOCOL_VERSION, type ModelIdentity } from "../../shared/protocol.js";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const sharedDir = process.env.TANDEM_SHARED_DIR ?? path.resolve(repoRoot, "..", "shared");
const MODEL_FILE = path.join(sharedDir, "models", "stories260K.gguf");
const HAVE_MODEL = existsSync(MODEL_FILE);
if (!HAVE_MODEL) console.warn(`Skipping the cloud server tests: model file ${MODEL_FILE} not found (set TANDEM_SHARED_DIR)`);

const TOKEN = "test-token-0123456789abcdef";
/** per-session context asked of the main server; node-llama-cpp keeps one cell free, so 255 usable */
const CONTEXT_SIZE = 256;

interface Reply {
  status: number;
  headers: Headers;
  // the tests read fields of many response shapes; each assertion states what it expects
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function call(
  server: CloudServer,
  method: string,
  route: string,
  body?: unknown,
  opts: { token?: string | null; raw?: string } = {},
): Promise<Reply> {
  const token = opts.token === undefined ? TOKEN : opts.token;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(server.url + route, {
    method,
    headers,
    body: opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

describe.skipIf(!HAVE_MODEL)(`cloud token server (model ${MODEL_FILE})`, () => {
  let model: LlamaModel;
  let identity: ModelIdentity;
  let server: CloudServer;
  let refContext: LlamaContext;
  let refSeq: LlamaContextSequence;
  const logs: string[] = [];
  /** BOS + "Once upon a time" and its greedy continuation: ref[L] is the greedy token after ref[0..L) */
  let ref: number[];
  let promptLength: number;

  /** Standalone greedy decoding in a separate context: the ground truth for the server's predictions. */
  async function greedy(prefix: readonly number[], steps: number): Promise<{ tokens: number[]; logprobs: number[] }> {
    await refSeq.eraseContextTokenRanges([{ start: 0, end: refSeq.nextTokenIndex }]);
    const tokens: number[] = [];
    const logprobs: number[] = [];
    let delta = prefix.slice() as Token[];
    for (let i = 0; i < steps; i++) {
      const out = await refSeq.controlledEvaluate([
        ...delta.slice(0, -1),
        [delta[delta.length - 1], { generateNext: { token: true, confidence: true, options: { temperature: 0 } } }],
      ]);
      const next = out[delta.length - 1]!.next;
      tokens.push(next.token!);
      logprobs.push(Math.log(next.confidence!));
      delta = [next.token!];
    }
    return { tokens, logprobs };
  }

  async function createSession(s: CloudServer = server): Promise<string> {
    const r = await call(s, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.sessionId as string;
  }

  beforeAll(async () => {
    const llama = await getTandemLlama();
    ({ model } = await loadModelFile(llama, MODEL_FILE));
    identity = modelIdentity(model);
    server = await startCloudServer({
      model,
      port: 0,
      token: TOKEN,
      maxSessions: 8,
      contextSize: CONTEXT_SIZE,
      log: (m) => logs.push(m),
    });
    refContext = await model.createContext({ contextSize: CONTEXT_SIZE, sequences: 1, threads: 1 });
    refSeq = refContext.getSequence();
    const prompt = [model.tokens.bos!, ...model.tokenize("Once upon a time")];
    promptLength = prompt.length;
    ref = [...prompt, ...(await greedy(prompt, 40)).tokens];
  });

  afterAll(async () => {
    await server?.close();
    await refContext?.dispose();
    await model?.dispose();
  });

  it("answers /health without a token", async () => {
    const r = await call(server, "GET", "/health", undefined, { token: null });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ok: true, protocol: PROTOCOL_VERSION, model: identity, maxSessions: 8 });
    // node-llama-cpp's contextSize is per sequence; one cell stays free for the next token
    expect(r.body.contextSize).toBe(CONTEXT_SIZE - 1);
    // keep-alive: the client sends many tiny requests over one connection
    expect(r.headers.get("keep-alive")).toMatch(/timeout=65/);
  });

  it("requires the right bearer token", async () => {
    const create = { protocol: PROTOCOL_VERSION, client: identity };
    const none = await call(server, "POST", "/v1/sessions", create, { token: null });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe("unauthorized");
    for (const wrong of ["x", TOKEN.slice(0, -1) + "X", TOKEN + "0"]) {
      const r = await call(server, "POST", "/v1/sessions", create, { token: wrong });
      expect(r.status).toBe(401);
    }
    const ok = await call(server, "POST", "/v1/sessions", create);
    expect(ok.status).toBe(200);
    expect(ok.body.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(ok.body.model).toEqual(identity);
    expect(ok.body.contextSize).toBe(CONTEXT_SIZE - 1);
    await call(server, "DELETE", `/v1/sessions/${ok.body.sessionId}`);
  });

  it("predicts exactly the standalone greedy tokens, with log-probabilities and sorted top-k", async () => {
    const id = await createSession();
    let length = 0;
    let delta = ref.slice(0, promptLength);
    for (let step = 0; step < 6; step++) {
      const r = await call(server, "POST", `/v1/sessions/${id}/next`, { base: length, tokens: delta, topK: 5 });
      expect(r.status).toBe(200);
      const L = length + delta.length;
      expect(r.body.length).toBe(L);
      expect(r.body.evaluated).toBe(delta.length);
      expect(r.body.tokenId).toBe(ref[L]);
      expect(r.body.logprob).toBeLessThanOrEqual(0);
      expect(r.body.top).toHaveLength(5);
      expect(r.body.top[0].tokenId).toBe(r.body.tokenId);
      expect(r.body.top[0].logprob).toBeCloseTo(r.body.logprob, 5);
      for (let i = 1; i < r.body.top.length; i++) expect(r.body.top[i].logprob).toBeLessThanOrEqual(r.body.top[i - 1].logprob);
      length = L;
      delta = [r.body.tokenId];
    }
    const { logprobs } = await greedy(ref.slice(0, length), 1);
    const last = await call(server, "POST", `/v1/sessions/${id}/next`, { base: length, tokens: [] });
    expect(last.body.logprob).toBeCloseTo(logprobs[0], 4);
    expect(last.body.top).toEqual([]); // topK defaults to 0
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("answers with the token only when asked (logprob: false): the same greedy tokens, no log-probability", async () => {
    const id = await createSession();
    let length = 0;
    let delta = ref.slice(0, promptLength);
    for (let step = 0; step < 4; step++) {
      const r = await call(server, "POST", `/v1/sessions/${id}/next`, { base: length, tokens: delta, logprob: false });
      expect(r.status).toBe(200);
      length += delta.length;
      expect(r.body.tokenId).toBe(ref[length]);
      expect(r.body).not.toHaveProperty("logprob");
      expect(r.body.top).toEqual([]);
      delta = [r.body.tokenId];
    }
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("evaluates only the delta", async () => {
    const id = await createSession();
    const a = await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: ref.slice(0, 20) });
    expect(a.body).toEqual({ length: 20, evaluated: 20 });
    const n = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 20, tokens: [ref[20]] });
    expect(n.body).toMatchObject({ length: 21, evaluated: 1, tokenId: ref[21] });
    const stats = server.stats();
    expect(stats.tokensEvaluated).toBeGreaterThanOrEqual(21);
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("rolls back when base < length and then predicts like a fresh session", async () => {
    const branch = [ref[12], ref[3], ref[7], ref[5]]; // a continuation the model did not choose
    const id = await createSession();
    await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: ref.slice(0, 30) });
    const rolled = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 10, tokens: branch, topK: 3 });
    expect(rolled.status).toBe(200);
    expect(rolled.body).toMatchObject({ length: 14, evaluated: 4 });

    const fresh = await createSession();
    const direct = await call(server, "POST", `/v1/sessions/${fresh}/next`, { base: 0, tokens: [...ref.slice(0, 10), ...branch], topK: 3 });
    expect(rolled.body.tokenId).toBe(direct.body.tokenId);
    expect(rolled.body.logprob).toBeCloseTo(direct.body.logprob, 5);
    expect(rolled.body.top.map((t: { tokenId: number }) => t.tokenId)).toEqual(direct.body.top.map((t: { tokenId: number }) => t.tokenId));
    expect(rolled.body.tokenId).toBe((await greedy([...ref.slice(0, 10), ...branch], 1)).tokens[0]);

    // truncate, then continue along the original history
    const t = await call(server, "POST", `/v1/sessions/${id}/truncate`, { length: 10 });
    expect(t.body).toEqual({ length: 10, evaluated: 0 });
    const cont = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 10, tokens: ref.slice(10, 25) });
    expect(cont.body).toMatchObject({ length: 25, evaluated: 15, tokenId: ref[25] });
    const beyond = await call(server, "POST", `/v1/sessions/${id}/truncate`, { length: 26 });
    expect(beyond.status).toBe(409);
    expect(beyond.body.error).toMatchObject({ code: "out_of_sync", length: 25 });
    await call(server, "DELETE", `/v1/sessions/${id}`);
    await call(server, "DELETE", `/v1/sessions/${fresh}`);
  });

  it("returns the LLM's greedy continuation with `draft`, keeps it evaluated, and truncates what the device does not take", async () => {
    const id = await createSession();
    const r = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 0, tokens: ref.slice(0, 12), draft: 5 });
    expect(r.status).toBe(200);
    // the predicted token, then five more: exactly standalone greedy decoding
    expect(r.body.tokenId).toBe(ref[12]);
    expect(r.body.draft).toEqual(ref.slice(13, 18));
    // it holds the predicted token and all draft tokens but the last, and says so
    expect(r.body).toMatchObject({ length: 17, evaluated: 12 + 5 });
    // the device took two of them and wrote its own token after: only that token is new
    const mine = ref[3]!;
    const after = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 15, tokens: [mine], draft: 2 });
    expect(after.body).toMatchObject({ length: 16 + 2, evaluated: 1 + 2 });
    const direct = await greedy([...ref.slice(0, 15), mine], 3);
    expect([after.body.tokenId, ...after.body.draft]).toEqual(direct.tokens);
    // without `draft` the reply has none
    const plain = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 16, tokens: [] });
    expect(plain.body.draft).toBeUndefined();
    expect(plain.body).toMatchObject({ length: 16, tokenId: direct.tokens[0] });
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("ends a continuation at the session's capacity", async () => {
    const id = await createSession();
    const cap = CONTEXT_SIZE - 1;
    const fill = Array.from({ length: cap - 3 }, (_, i) => ref[i % ref.length]!);
    const r = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 0, tokens: fill, draft: 8 });
    expect(r.status).toBe(200);
    expect(r.body.draft).toHaveLength(3);
    expect(r.body.length).toBe(cap);
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("re-predicts on an empty delta by re-evaluating the last held token", async () => {
    const id = await createSession();
    const empty = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 0, tokens: [] });
    expect(empty.status).toBe(400); // nothing to predict from
    await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: ref.slice(0, 15) });
    const again = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 15, tokens: [], topK: 2 });
    expect(again.body).toMatchObject({ length: 15, evaluated: 1, tokenId: ref[15] });
    expect(again.body.top).toHaveLength(2);
    const twice = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 15, tokens: [] });
    expect(twice.body).toMatchObject({ length: 15, evaluated: 1, tokenId: ref[15] });
    // an empty delta below the length: roll back to base, predict from there
    const back = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 9, tokens: [] });
    expect(back.body).toMatchObject({ length: 9, evaluated: 1, tokenId: ref[9] });
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("refuses a delta that starts beyond the session's tokens with out_of_sync", async () => {
    const id = await createSession();
    await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: ref.slice(0, 5) });
    const r = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 7, tokens: [ref[7]] });
    expect(r.status).toBe(409);
    expect(r.body.error).toMatchObject({ code: "out_of_sync", length: 5 });
    // the client resends from `length` and carries on
    const ok = await call(server, "POST", `/v1/sessions/${id}/next`, { base: 5, tokens: ref.slice(5, 8) });
    expect(ok.body).toMatchObject({ length: 8, tokenId: ref[8] });
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("refuses another vocabulary with a message naming both models, and another protocol", async () => {
    const other: ModelIdentity = { name: "other-model-7B.gguf", vocabHash: "ab".repeat(32), vocabSize: 32000 };
    const r = await call(server, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: other });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("vocab_mismatch");
    expect(r.body.error.message).toContain("other-model-7B.gguf");
    expect(r.body.error.message).toContain(identity.name);
    // the same tokenizer with another size (padding rows, as between Qwen2.5 sizes) is admitted; token
    // IDs are still checked against the server's own vocabulary
    const sameHashOtherSize = await call(server, "POST", "/v1/sessions", {
      protocol: PROTOCOL_VERSION,
      client: { ...identity, vocabSize: identity.vocabSize + 128 },
    });
    expect(sameHashOtherSize.status).toBe(200);
    const padded = sameHashOtherSize.body.sessionId as string;
    const beyond = await call(server, "POST", `/v1/sessions/${padded}/next`, { base: 0, tokens: [identity.vocabSize] });
    expect(beyond.status).toBe(400);
    expect(beyond.body.error.code).toBe("bad_request");
    await call(server, "DELETE", `/v1/sessions/${padded}`);
    const p = await call(server, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION + 1, client: identity });
    expect(p.status).toBe(400);
    expect(p.body.error.code).toBe("protocol_mismatch");
  });

  it("validates every field strictly", async () => {
    const id = await createSession();
    const bad: unknown[] = [
      { base: 0, tokens: [identity.vocabSize] }, // out of range
      { base: 0, tokens: [-1] },
      { base: 0, tokens: [1.5] },
      { base: 0, tokens: ["1"] },
      { base: 0, tokens: [null] },
      { base: 0, tokens: "1,2" },
      { base: -1, tokens: [1] },
      { base: 0.5, tokens: [1] },
      { base: "0", tokens: [1] },
      { tokens: [1] },
      { base: 0, tokens: [1], topK: PROTOCOL_LIMITS.maxTopK + 1 },
      { base: 0, tokens: [1], topK: -1 },
      { base: 0, tokens: [1], draft: PROTOCOL_LIMITS.maxDraft + 1 },
      { base: 0, tokens: [1], draft: 1.5 },
      { base: 0, tokens: [1], logprob: "no" },
      { base: 0, tokens: [1], logprob: false, topK: 2 }, // alternatives are log-probabilities
      { base: 0, tokens: new Array(PROTOCOL_LIMITS.maxDeltaTokens + 1).fill(1) },
      [0, [1]],
      null,
    ];
    for (const body of bad) {
      const r = await call(server, "POST", `/v1/sessions/${id}/next`, body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(r.body.error.code).toBe("bad_request");
    }
    for (const client of [{ ...identity, vocabHash: "xyz" }, { ...identity, vocabSize: 0 }, { ...identity, name: "" }, "model"]) {
      const r = await call(server, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client });
      expect(r.status).toBe(400);
    }
    const garbage = await call(server, "POST", `/v1/sessions/${id}/next`, undefined, { raw: '{"base": 0, "tokens": [1,' });
    expect(garbage.status).toBe(400);
    expect(garbage.body.error.code).toBe("bad_request");
    const empty = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, { raw: "" });
    expect(empty.status).toBe(400);
    // nesting: refused before parsing beyond 8 levels (a parsed 1 MB of "[[[[" is tens of MB of heap),
    // and a deep value never reaches an error message (JSON.stringify of it overflowed the stack: a 500)
    const nested = (depth: number) => `{"base":0,"tokens":[${"[".repeat(depth - 2)}1${"]".repeat(depth - 2)}]}`;
    const deep = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, { raw: nested(9) });
    expect(deep.status).toBe(400);
    expect(deep.body.error.message).toMatch(/nests 9 levels deep; requests nest at most 8/);
    const veryDeep = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, { raw: nested(300_000) });
    expect(veryDeep.body.error.message).toMatch(/more than 1000 levels/);
    const shallow = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, { raw: nested(8) });
    expect(shallow.status).toBe(400);
    expect(shallow.body.error.message).toBe("tokens[0] = an array of 1 is not a token ID in [0, 512)");
    // brackets inside strings are not nesting
    const inString = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, {
      raw: `{"base":0,"tokens":[],"note":"${"[".repeat(50)}\\"${"{".repeat(50)}"}`,
    });
    expect(inString.status).toBe(200);
    const longString = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, {
      raw: `{"base":"${"x".repeat(100_000)}","tokens":[]}`,
    });
    expect(longString.body.error.message.length).toBeLessThan(200); // not echoed back
    // nothing above reached the session
    const after = await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: [] });
    expect(after.body).toEqual({ length: 0, evaluated: 0 });
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("refuses an oversized body with 413 without reading it all", async () => {
    const id = await createSession();
    const raw = `{"base":0,"tokens":[${"1,".repeat(PROTOCOL_LIMITS.maxBodyBytes / 2)}1]}`;
    const r = await call(server, "POST", `/v1/sessions/${id}/append`, undefined, { raw });
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe("payload_too_large");
    // a streamed body with no Content-Length is cut off as well
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        if (sent > 64 * PROTOCOL_LIMITS.maxBodyBytes) controller.close();
        else controller.enqueue(chunk);
      },
    });
    const res = await fetch(`${server.url}/v1/sessions/${id}/append`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: stream,
      duplex: "half",
    } as RequestInit & { duplex: "half" }); // Node's fetch needs `duplex` for a stream body; DOM typings lack it
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(64 * PROTOCOL_LIMITS.maxBodyBytes); // the server stopped reading early
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("answers unknown routes, wrong methods and unknown sessions", async () => {
    expect((await call(server, "GET", "/v2/whatever")).status).toBe(404);
    expect((await call(server, "GET", "/v2/whatever")).body.error.code).toBe("not_found");
    expect((await call(server, "GET", "/v1/sessions/abc/next/more")).status).toBe(404);
    const wrongMethod = await call(server, "GET", "/v1/sessions");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.body.error.code).toBe("bad_request");
    expect((await call(server, "POST", "/health", {})).status).toBe(405);
    const unknown = "123e4567-e89b-12d3-a456-426614174000";
    const r = await call(server, "POST", `/v1/sessions/${unknown}/next`, { base: 0, tokens: [1] });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("session_not_found");
    expect((await call(server, "POST", "/v1/sessions/not-a-uuid/append", { base: 0, tokens: [1] })).body.error.code).toBe(
      "session_not_found",
    );
    const id = await createSession();
    expect((await call(server, "DELETE", `/v1/sessions/${id}`)).body).toEqual({ ok: true });
    expect((await call(server, "DELETE", `/v1/sessions/${id}`)).status).toBe(404);
    expect((await call(server, "POST", `/v1/sessions/${id}/next`, { base: 0, tokens: [1] })).body.error.code).toBe("session_not_found");
  });

  it("gives concurrent sessions the same results as sequential ones", async () => {
    const prompts = [ref.slice(0, 6), ref.slice(0, 11), [ref[0], ref[9], ref[4]], [ref[0], ref[20], ref[21], ref[22]]];
    const steps = 6;
    const run = async (prompt: number[]) => {
      const id = await createSession();
      const out: { tokenId: number; logprob: number }[] = [];
      let length = 0;
      let delta = prompt;
      for (let i = 0; i < steps; i++) {
        const r = await call(server, "POST", `/v1/sessions/${id}/next`, { base: length, tokens: delta, topK: 1 });
        expect(r.status).toBe(200);
        out.push({ tokenId: r.body.tokenId, logprob: r.body.logprob });
        length = r.body.length;
        delta = [r.body.tokenId];
      }
      await call(server, "DELETE", `/v1/sessions/${id}`);
      return out;
    };
    const sequential = [];
    for (const p of prompts) sequential.push(await run(p));
    const concurrent = await Promise.all(prompts.map(run));
    for (let s = 0; s < prompts.length; s++) {
      expect(concurrent[s].map((x) => x.tokenId)).toEqual(sequential[s].map((x) => x.tokenId));
      // one batched decode for several sequences rounds differently from one decode each (measured
      // ~1e-4 here), so log-probabilities match closely, not bit for bit
      for (let i = 0; i < steps; i++) expect(Math.abs(concurrent[s][i].logprob - sequential[s][i].logprob)).toBeLessThan(2e-3);
      expect(sequential[s].map((x) => x.tokenId)).toEqual((await greedy(prompts[s], steps)).tokens);
    }
  });

  it("serializes requests of one session", async () => {
    const id = await createSession();
    // sent at once; each continues from the previous one's length, so order matters
    const replies = await Promise.all([
      call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: ref.slice(0, 10) }),
      call(server, "POST", `/v1/sessions/${id}/append`, { base: 10, tokens: ref.slice(10, 20) }),
      call(server, "POST", `/v1/sessions/${id}/next`, { base: 20, tokens: ref.slice(20, 22) }),
    ]);
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(replies[2].body).toMatchObject({ length: 22, tokenId: ref[22] });
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("refuses to grow a session beyond its context with context_overflow", async () => {
    const capacity = CONTEXT_SIZE - 1;
    const id = await createSession();
    const filler = Array.from({ length: capacity }, (_, i) => ref[i % ref.length]);
    const full = await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: filler });
    expect(full.body).toEqual({ length: capacity, evaluated: capacity });
    const over = await call(server, "POST", `/v1/sessions/${id}/next`, { base: capacity, tokens: [ref[0]] });
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe("context_overflow");
    // nothing was dropped: the session still holds every token and can predict from a full context
    const still = await call(server, "POST", `/v1/sessions/${id}/next`, { base: capacity, tokens: [] });
    expect(still.body).toMatchObject({ length: capacity, evaluated: 1 });
    const tooLong = await call(server, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: [...filler, 1] });
    expect(tooLong.body.error.code).toBe("context_overflow");
    await call(server, "DELETE", `/v1/sessions/${id}`);
  });

  it("answers malformed HTTP with 400 and keeps serving", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, "127.0.0.1", () => socket.write("THIS IS NOT HTTP\r\n\r\n"));
      let data = "";
      socket.on("data", (d) => (data += d.toString()));
      socket.on("close", () => resolve(data));
      socket.on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
  });

  describe("session limits", () => {
    let small: CloudServer;
    beforeAll(async () => {
      small = await startCloudServer({
        model,
        port: 0,
        token: TOKEN,
        maxSessions: 2,
        contextSize: 64,
        idleTimeoutMs: 300,
        log: (m) => logs.push(m),
      });
    });
    afterAll(() => small?.close());

    it("refuses sessions beyond the cap with 429 until one is deleted or idle", async () => {
      const a = await createSession(small);
      const b = await createSession(small);
      const c = await call(small, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
      expect(c.status).toBe(429);
      expect(c.body.error.code).toBe("too_many_sessions");
      await call(small, "DELETE", `/v1/sessions/${a}`);
      const d = await createSession(small); // the freed sequence is reused at once
      await call(small, "POST", `/v1/sessions/${d}/append`, { base: 0, tokens: ref.slice(0, 10) });
      // d stays in use while b goes idle; the next session takes b's place
      await new Promise((r) => setTimeout(r, 200));
      await call(small, "POST", `/v1/sessions/${d}/next`, { base: 10, tokens: [] });
      await new Promise((r) => setTimeout(r, 200));
      const e = await createSession(small);
      const gone = await call(small, "POST", `/v1/sessions/${b}/next`, { base: 0, tokens: [1] });
      expect(gone.body.error.code).toBe("session_not_found");
      // a reused sequence starts empty
      const fresh = await call(small, "POST", `/v1/sessions/${e}/next`, { base: 0, tokens: ref.slice(0, 6) });
      expect(fresh.body).toMatchObject({ length: 6, evaluated: 6, tokenId: ref[6] });
      await call(small, "DELETE", `/v1/sessions/${d}`);
      await call(small, "DELETE", `/v1/sessions/${e}`);
    });

    it("evicts idle sessions (session_not_found afterwards)", async () => {
      const id = await createSession(small);
      await call(small, "POST", `/v1/sessions/${id}/append`, { base: 0, tokens: ref.slice(0, 5) });
      await new Promise((r) => setTimeout(r, 500));
      const r = await call(small, "POST", `/v1/sessions/${id}/next`, { base: 5, tokens: [] });
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe("session_not_found");
      expect(small.stats().evicted).toBeGreaterThanOrEqual(1);
      expect(small.stats().sessions).toBe(0);
    });

    it("limits sessions per client", async () => {
      const perClient = await startCloudServer({ model, port: 0, token: TOKEN, maxSessions: 3, maxSessionsPerClient: 1, contextSize: 64 });
      try {
        await createSession(perClient);
        const second = await call(perClient, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
        expect(second.body.error.code).toBe("too_many_sessions");
      } finally {
        await perClient.close();
      }
    });
  });

  it("rate-limits each client", async () => {
    const limited = await startCloudServer({
      model,
      port: 0,
      token: TOKEN,
      maxSessions: 1,
      contextSize: 64,
      rateLimit: { perSecond: 1, burst: 3 },
    });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await call(limited, "GET", "/v2/nothing")).status);
      expect(statuses).toEqual([404, 404, 404, 429]);
      const r = await call(limited, "GET", "/v2/nothing");
      expect(r.body.error.code).toBe("rate_limited");
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect((await call(limited, "GET", "/health")).status).toBe(200); // health is never limited
    } finally {
      await limited.close();
    }
  });

  it("starts without a token only on loopback and only when allowed", async () => {
    await expect(startCloudServer({ model, port: 0 })).rejects.toThrow(/token/);
    await expect(startCloudServer({ model, port: 0, host: "0.0.0.0", allowNoAuth: true })).rejects.toThrow(/0\.0\.0\.0/);
    await expect(startCloudServer({ model, port: 0, token: "short" })).rejects.toThrow(/16 characters/);
    const open = await startCloudServer({ model, port: 0, allowNoAuth: true, maxSessions: 1, contextSize: 64 });
    try {
      expect(open.authRequired).toBe(false);
      const r = await call(open, "POST", "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity }, { token: null });
      expect(r.status).toBe(200);
    } finally {
      await open.close();
    }
    await expect(startCloudServer({ model, port: server.port, token: TOKEN })).rejects.toThrow(/in use/);
  });

  it("survived everything above", async () => {
    const r = await call(server, "GET", "/health", undefined, { token: null });
    expect(r.status).toBe(200);
    expect(r.body.sessions).toBe(0); // every test deleted its sessions
    const stats = server.stats();
    expect(stats.errors.internal ?? 0).toBe(0);
    expect(logs).toEqual([]);
    expect(stats.predictions).toBeGreaterThan(0);
  });
});
