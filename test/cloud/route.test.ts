/**
 * The server's /route stream (RouteRequest) against real models over real HTTP: what the replica
 * decides at each position, where it ends, how it is preempted, and what it refuses.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { PROTOCOL_LIMITS, PROTOCOL_VERSION, type RouteLine } from "../../shared/protocol.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { LocalModel } from "../../inference/localModel.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { bindingOf, encodeRouterFile } from "../../router/file.js";
import { LearnedRouter } from "../../router/learnedRouter.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { initMlp } from "../../router/mlp.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";
import { mulberry32 } from "../../shared/prng.js";

const TOKEN = "route-test-token-0123456789";

describe("/route: the device's routed decoding continued on the server", () => {
  let files: PairFiles;
  let server: CloudServer;
  let plain: CloudServer;
  let slm: LocalModel;
  let llm: LocalModel;
  let prompt: number[];

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    // one session per test case, never deleted: room for all of them
    server = await startCloudServer({
      modelPath: files.llm,
      replicaModelPath: files.slm,
      port: 0,
      token: TOKEN,
      rateLimit: false,
      contextSize: 512,
      maxSessions: 32,
      log: () => {},
    });
    plain = await startCloudServer({ modelPath: files.llm, port: 0, token: TOKEN, rateLimit: false, contextSize: 512, log: () => {} });
    slm = await LocalModel.load(files.slm, { contextSize: 512 });
    llm = await LocalModel.load(files.llm, { contextSize: 512 });
    prompt = slm.tokenizeText("Once upon a time");
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await plain?.close();
    await slm?.dispose();
    await llm?.dispose();
  });

  const post = (s: CloudServer, path: string, body: unknown, token: string | null = TOKEN) =>
    fetch(s.url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
  const session = async (s: CloudServer = server) => {
    const r = await post(s, "/v1/sessions", { protocol: PROTOCOL_VERSION, client: slm.identity });
    expect(r.status).toBe(200);
    return (await r.json()) as { sessionId: string; replica?: { model: { weights?: string }; routers: string[] } };
  };
  const lines = async (r: Response) =>
    (await r.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as RouteLine);
  const positions = (ls: RouteLine[]) => ls.filter((l): l is { tokenId: number; routed: boolean } => "tokenId" in l);
  const route = (id: string, over: Record<string, unknown> = {}) =>
    post(server, `/v1/sessions/${id}/route`, {
      base: 0,
      tokens: prompt,
      tau: 0.5,
      router: { kind: "confidence" },
      position: 0,
      max: 12,
      ...over,
    });

  /** greedy continuation of `model` after `history`, `n` tokens */
  async function greedy(model: LocalModel, history: number[], n: number): Promise<number[]> {
    await model.clear();
    const out: number[] = [];
    let step = await model.begin(history, { top1Prob: false, topK: 0, hidden: false });
    for (let i = 0; i < n; i++) {
      out.push(step.tokenId);
      step = await model.advance(step.tokenId, { top1Prob: false, topK: 0, hidden: false });
    }
    return out;
  }

  it("a session says which SLM the server replicates, with its weights' fingerprint; a server without one says nothing", async () => {
    const s = await session();
    expect(s.replica?.model.weights).toBe(slm.identity.weights);
    expect(s.replica?.routers).toEqual(["confidence", "mlp"]);
    expect((await session(plain)).replica).toBeUndefined();
  });

  it("τ = 1: every position routed, the LLM's greedy continuation; the end line says the LLM read all but the last", async () => {
    const { sessionId } = await session();
    const ls = await lines(await route(sessionId, { tau: 1, max: 10 }));
    const ps = positions(ls);
    expect(ps.every((p) => p.routed)).toBe(true);
    expect(ps.map((p) => p.tokenId)).toEqual(await greedy(llm, prompt, ps.length));
    const end = ls.at(-1) as { end: string; length: number };
    expect(ps.length).toBeLessThanOrEqual(10);
    if (end.end === "max") expect(ps.length).toBe(10);
    else expect(end.end).toBe("eog");
    expect(end.length).toBe(prompt.length + ps.length - 1);
  });

  it("τ = 0: only the first position goes to the LLM, the rest are the SLM's own greedy tokens", async () => {
    const { sessionId } = await session();
    const ps = positions(await lines(await route(sessionId, { tau: 0, max: 12 })));
    expect(ps[0]!.routed).toBe(true);
    expect(ps.slice(1).every((p) => !p.routed)).toBe(true);
    const first = ps[0]!.tokenId;
    expect(first).toBe((await greedy(llm, prompt, 1))[0]);
    expect(ps.slice(1).map((p) => p.tokenId)).toEqual(await greedy(slm, [...prompt, first], ps.length - 1));
  });

  it("the replica's decisions are the device's confidence router's at τ", async () => {
    const tau = 0.5;
    const { sessionId } = await session();
    const ps = positions(await lines(await route(sessionId, { tau, max: 16 })));
    // replay: the SLM's confidence at each position after the stream's tokens decides routed or not
    await slm.clear();
    const history = [...prompt, ps[0]!.tokenId];
    const router = new ConfidenceRouter();
    let step = await slm.begin(history, router.needs);
    for (const p of ps.slice(1)) {
      const routes = router.score({ top1Prob: step.top1Prob }) < tau;
      expect(p.routed).toBe(routes);
      if (!routes) expect(p.tokenId).toBe(step.tokenId);
      step = await slm.advance(p.tokenId, router.needs);
    }
  });

  it("a router network on every feature (hidden state, top-1, top-k spread): the replica decides as the device's router does", async () => {
    const features = { hidden: true, top1: true, dist: true, topK: 8 };
    const device = await LocalModel.load(files.slm, { contextSize: 512, hiddenState: true });
    try {
      const router = new LearnedRouter(initMlp([device.hiddenSize + 3, 8, 1], 7), features, bindingOf(device));
      const { sessionId } = await session();
      const up = await post(server, `/v1/sessions/${sessionId}/router`, router.replica.network());
      expect(up.status).toBe(200);
      const { digest } = (await up.json()) as { digest: string };
      // τ at the median of the device's own scores on a local answer: about half the positions route
      const scores: number[] = [];
      for await (const e of new CollaborativeDecoder(device, router, null).generate(prompt, { tau: 0, maxTokens: 24 }))
        scores.push(e.confidence);
      const tau = scores.slice().sort((a, b) => a - b)[12]!;
      const ps = positions(await lines(await route(sessionId, { tau, router: { kind: "mlp", digest }, max: 16 })));
      expect(ps.length).toBe(16);
      await device.clear();
      let step = await device.begin([...prompt, ps[0]!.tokenId], router.needs);
      let routed = 0;
      for (const [i, p] of ps.slice(1).entries()) {
        const routes =
          router.score({ top1Prob: step.top1Prob, topProbs: step.top?.map((c) => c.prob), hidden: step.hidden, position: i + 1 }) < tau;
        expect(p.routed).toBe(routes);
        if (!routes) expect(p.tokenId).toBe(step.tokenId);
        routed += routes ? 1 : 0;
        step = await device.advance(p.tokenId, router.needs);
      }
      expect(routed).toBeGreaterThan(0);
      expect(routed).toBeLessThan(15);
    } finally {
      await device.dispose();
    }
  });

  it.each([1, 0])("τ = %i: the session then holds what the end line says, and a /next from there predicts as usual", async (tau) => {
    const { sessionId } = await session();
    const ls = await lines(await route(sessionId, { tau, max: 12 }));
    const ps = positions(ls).map((p) => p.tokenId);
    const end = ls.at(-1) as { length: number };
    // the LLM has read up to the stream's last routed position: τ = 1, all but the last token (to
    // predict it); τ = 0, only the history (the replica's own tokens after it go with the next request)
    expect(end.length).toBe(prompt.length + (tau === 1 ? ps.length - 1 : 0));
    const history = [...prompt, ...ps];
    const r = await post(server, `/v1/sessions/${sessionId}/next`, { base: end.length, tokens: history.slice(end.length) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { tokenId: number }).tokenId).toBe((await greedy(llm, history, 1))[0]);
  });

  it("another request for the session ends the stream at once (preempted)", async () => {
    const { sessionId } = await session();
    const res = await route(sessionId, { tau: 1, max: PROTOCOL_LIMITS.maxRoute });
    const reader = res.body!.getReader();
    await reader.read(); // the first position is out: the stream is running
    const append = await post(server, `/v1/sessions/${sessionId}/append`, { base: prompt.length, tokens: [] });
    expect(append.status).toBe(200);
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const last = JSON.parse(text.trim().split("\n").at(-1)!) as { end: string };
    expect(last.end).toBe("preempted");
  });

  it.each<[string, Record<string, unknown>, number, string]>([
    ["τ outside [0, 1]", { tau: 2 }, 400, "bad_request"],
    ["an unknown router", { router: { kind: "oracle" } }, 400, "bad_request"],
    ["max 0", { max: 0 }, 400, "bad_request"],
    ["max beyond the limit", { max: PROTOCOL_LIMITS.maxRoute + 1 }, 400, "bad_request"],
    ["a router network never uploaded", { router: { kind: "mlp", digest: "a".repeat(64) } }, 501, "no_replica"],
    ["a token outside the vocabulary", { tokens: [-1] }, 400, "bad_request"],
  ])("refuses %s", async (_name, over, status, code) => {
    const { sessionId } = await session();
    const r = await route(sessionId, over);
    expect(r.status).toBe(status);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it("refuses /route without the token, and on a server without a replica (no_replica)", async () => {
    const { sessionId } = await session();
    const r = await post(
      server,
      `/v1/sessions/${sessionId}/route`,
      { base: 0, tokens: prompt, tau: 0.5, router: { kind: "confidence" }, position: 0, max: 4 },
      null,
    );
    expect(r.status).toBe(401);
    const p = await session(plain);
    const q = await post(plain, `/v1/sessions/${p.sessionId}/route`, {
      base: 0,
      tokens: prompt,
      tau: 0.5,
      router: { kind: "confidence" },
      position: 0,
      max: 4,
    });
    expect(q.status).toBe(501);
    expect(((await q.json()) as { error: { code: string } }).error.code).toBe("no_replica");
  });

  it("router uploads: one made for this SLM is taken and named by digest; one for another model or garbage is refused", async () => {
    const { sessionId } = await session();
    const features = { hidden: true, top1: false, dist: false, topK: 0 };
    const network = (identity: { name: string; vocabHash: string }, hiddenSize: number) =>
      encodeRouterFile({
        slm: { name: identity.name, vocabHash: identity.vocabHash, hiddenSize },
        features,
        params: initMlp([hiddenSize, 4, 1], 1),
      });
    const ok = await post(server, `/v1/sessions/${sessionId}/router`, network(slm.identity, slm.hiddenSize));
    expect(ok.status).toBe(200);
    const { digest } = (await ok.json()) as { digest: string };
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    const ps = positions(await lines(await route(sessionId, { router: { kind: "mlp", digest }, max: 6 })));
    expect(ps.length).toBe(6);
    const other = await post(server, `/v1/sessions/${sessionId}/router`, network(llm.identity, llm.hiddenSize + 1));
    expect(other.status).toBe(400);
    const garbage = await post(server, `/v1/sessions/${sessionId}/router`, { format: "nope" });
    expect(garbage.status).toBe(400);
  });

  it(
    "400 seeded malformed /route and /router requests: each a 4xx (501 only for a network never uploaded), no 5xx, and the replica streams as before afterwards",
    { timeout: 120_000 },
    async () => {
      const rand = mulberry32(20261122);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const nasty = [null, true, -1, 1.5, 2 ** 53, 1e300, "x", "", [], {}, [[[[]]]], { kind: "confidence" }, "a".repeat(5000), -0, NaN];
      const { sessionId } = await session();
      const valid = () => ({ base: 0, tokens: prompt.slice(), tau: 0.5, router: { kind: "confidence" }, position: 0, max: 3 });
      const before = await lines(await route(sessionId, { max: 8 }));
      const bad: string[] = [];
      const tally: Record<string, number> = {};
      for (let i = 0; i < 400; i++) {
        const body: Record<string, unknown> = valid();
        const what = pick(["field", "router", "token", "garbage", "upload"] as const);
        let path = `/v1/sessions/${sessionId}/route`;
        let raw: string;
        if (what === "field") body[pick(["base", "tokens", "tau", "router", "position", "max"])] = pick(nasty);
        if (what === "router")
          body.router = pick([
            { kind: "mlp" },
            { kind: "mlp", digest: "z".repeat(64) },
            { kind: "mlp", digest: "A".repeat(64) },
            { kind: "mlp", digest: "b".repeat(64) },
            { kind: pick(nasty) },
            pick(nasty),
          ]);
        if (what === "token") (body.tokens as unknown[])[Math.floor(rand() * prompt.length)] = pick([-1, 1.5, 1e9, "1", null]);
        if (what === "upload") {
          path = `/v1/sessions/${sessionId}/router`;
          raw = pick([
            JSON.stringify(pick(nasty)),
            JSON.stringify({ format: "tandem-router", version: 1, slm: pick(nasty) }),
            '{"format":"tandem-router","version":1,"slm":{"name":"x","vocabHash":"y","hiddenSize":8},"features":{},"network":{"sizes":[1e9,1],"weights":["AA=="],"biases":[""],"mean":"","std":""}}',
            "{".repeat(100),
          ]);
        } else raw = JSON.stringify(body);
        if (what === "garbage") raw = pick(["", "{", "[]", "null", raw.slice(0, Math.floor(rand() * raw.length)), raw + "}"]);
        const r = await fetch(server.url + path, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
          body: raw,
        });
        const text = await r.text();
        // a mutation that still makes a valid request (e.g. -0 for a number, a τ of true→400) streams: that is fine
        const ok =
          r.status === 200
            ? text
                .trim()
                .split("\n")
                .every((l) => JSON.parse(l) !== null)
            : r.status >= 400 && r.status < 500
              ? true
              : r.status === 501 && /no_replica/.test(text);
        if (!ok) bad.push(`${what} ${raw.slice(0, 120)} → ${r.status} ${text.slice(0, 200)}`);
        tally[`${what} ${r.status}`] = (tally[`${what} ${r.status}`] ?? 0) + 1;
      }
      expect(bad).toEqual([]);
      console.log(`route fuzz: ${JSON.stringify(tally)}`);
      const statuses = (await (await fetch(server.url + "/health", { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
        detail: { stats: { statuses: Record<string, number> } };
      };
      expect(Object.keys(statuses.detail.stats.statuses).filter((c) => Number(c) >= 500 && c !== "501")).toEqual([]);
      // the replica still decides as it did
      const after = await lines(await route(sessionId, { max: 8 }));
      expect(positions(after)).toEqual(positions(before));
    },
  );

  it("the client uses a replica only if it runs the device's own weights", async () => {
    const own = new TandemCloudClient({ url: server.url, token: TOKEN });
    await own.connect(slm.identity);
    const other = new TandemCloudClient({ url: server.url, token: TOKEN });
    await other.connect({ ...slm.identity, weights: "0".repeat(64) });
    expect(own.replicated).toBe(true);
    expect(other.replicated).toBe(false);
    const opts = { tau: 0.5, router: new ConfidenceRouter(), position: 0, max: 4 };
    const stream = own.route(prompt, opts);
    expect(stream).not.toBeNull();
    expect((await stream!.at(0)) as object).toHaveProperty("entry");
    stream!.cancel();
    expect(other.route(prompt, opts)).toBeNull();
    await own.close();
    await other.close();
  });
});
