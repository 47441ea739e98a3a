/**
 * Issue 16, class 7 (and class 1 for the cloud server): the token server under hostile clients, on a
 * real model over real sockets on 127.0.0.1.
 *   - 1,100 sockets with unfinished headers do not lock an authenticated client out, and are reaped
 *     at the short header timeout;
 *   - every router-upload field is type-checked: a malformed upload is a 400 with a short JSON error
 *     (no 500, no stack trace), and an accepted upload streams a whole /route;
 *   - a --no-auth server on loopback refuses what only a browser sends (Origin, a non-JSON body,
 *     a non-loopback Host), so a web page's no-cors fetch cannot take its sessions;
 *   - no request handler lets an exception escape: odd URLs, methods and headers are 4xx.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { PROTOCOL_VERSION, type ModelIdentity } from "../../shared/protocol.js";
import { encodeRouterFile } from "../../router/file.js";
import { initMlp } from "../../router/mlp.js";
import { LocalModel } from "../../inference/localModel.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";

const TOKEN = "hostile-test-token-0123456789";
const HALF_OPEN = 1100;

interface Raw {
  status: number;
  text: string;
}

/** One request on a fresh socket, written as given: what the server answers, or "closed". */
function rawRequest(port: number, request: string, timeoutMs = 5000): Promise<Raw | "closed"> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let data = "";
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on("connect", () => socket.write(request));
    socket.on("data", (d) => (data += d.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      // the final status: a 100 Continue may come first
      const statuses = [...data.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1])).filter((s) => s >= 200);
      resolve(statuses.length ? { status: statuses.at(-1)!, text: data } : "closed");
    });
    socket.setTimeout(timeoutMs);
  });
}

describe("the cloud server under hostile clients", () => {
  let files: PairFiles;
  let server: CloudServer;
  let open: CloudServer;
  let slm: LocalModel;
  let identity: ModelIdentity;
  const logs: string[] = [];

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    server = await startCloudServer({
      modelPath: files.llm,
      replicaModelPath: files.slm,
      port: 0,
      token: TOKEN,
      rateLimit: false,
      contextSize: 256,
      maxSessions: 8,
      log: (m) => logs.push(m),
    });
    open = await startCloudServer({
      modelPath: files.llm,
      port: 0,
      allowNoAuth: true,
      rateLimit: false,
      contextSize: 256,
      maxSessions: 4,
      log: (m) => logs.push(m),
    });
    slm = await LocalModel.load(files.slm, { contextSize: 256 });
    identity = slm.identity;
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await open?.close();
    await slm?.dispose();
  });

  const post = (s: CloudServer, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(s.url + path, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}`, ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const session = async (s: CloudServer = server) => {
    const r = await post(s, "/v1/sessions", { protocol: PROTOCOL_VERSION, client: identity });
    expect(r.status).toBe(200);
    return ((await r.json()) as { sessionId: string }).sessionId;
  };

  it(
    `${HALF_OPEN} sockets with unfinished headers: an authenticated client still gets in at once, and they are reaped within seconds`,
    { timeout: 60_000 },
    async () => {
      const port = Number(new URL(server.url).port);
      const opened = async () => {
        const t0 = performance.now();
        // a fresh connection each time (no keep-alive socket of the client's own to fall back on)
        const r = await fetch(server.url + "/v1/sessions", {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}`, connection: "close" },
          body: JSON.stringify({ protocol: PROTOCOL_VERSION, client: identity }),
        });
        return { r, ms: performance.now() - t0 };
      };
      let quiet = await opened();
      for (let i = 0; i < 2; i++) {
        // twice: the first session of a server also creates its sequence
        expect(quiet.r.status).toBe(200);
        await fetch(`${server.url}/v1/sessions/${((await quiet.r.json()) as { sessionId: string }).sessionId}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        if (i === 0) quiet = await opened();
      }
      const sockets: net.Socket[] = [];
      let closedByServer = 0; // as the (non-reading) clients see it
      await Promise.all(
        Array.from(
          { length: HALF_OPEN },
          () =>
            new Promise<void>((resolve) => {
              const s = net.connect(port, "127.0.0.1", () => {
                s.write("POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
                resolve();
              });
              s.on("error", () => resolve());
              s.on("close", () => closedByServer++);
              sockets.push(s);
            }),
        ),
      );
      try {
        const { r, ms } = await opened();
        expect(r.status).toBe(200);
        const { sessionId } = (await r.json()) as { sessionId: string };
        const next = await post(server, `/v1/sessions/${sessionId}/next`, { base: 0, tokens: [1, 2, 3] });
        expect(next.status).toBe(200);
        console.log(
          `${HALF_OPEN} half-open sockets: an authenticated session opened in ${ms.toFixed(0)} ms (${quiet.ms.toFixed(0)} ms without them)`,
        );
        // its connection waits in the accept queue behind the flood's (Node accepts one in about a
        // millisecond, slower on this shared machine), not for the header timeout: before the fix it
        // was refused until that reaped them, up to 66 s
        expect(ms).toBeLessThan(5000);
        // the header timeout (5 s, checked every second) reaps the rest: the server holds none of them
        const t1 = performance.now();
        const held = () => server.stats().connections.open;
        while (held() > 1 && performance.now() - t1 < 15_000) await new Promise((r) => setTimeout(r, 200));
        const stats = server.stats().connections;
        console.log(
          `of ${HALF_OPEN} half-open sockets: ${stats.evicted} closed at the per-address cap as they came, the rest reaped by the header timeout; ` +
            `${stats.open} open ${((performance.now() - t1) / 1000).toFixed(1)} s after the client's session (${closedByServer} closes seen by the clients)`,
        );
        expect(stats.open).toBeLessThanOrEqual(1); // at most the client's own keep-alive socket
        expect(stats.refused).toBe(0);
      } finally {
        for (const s of sockets) s.destroy();
      }
    },
  );

  it(
    "a flood of fresh connections beyond the cap evicts unfinished ones, never an authenticated keep-alive client",
    { timeout: 60_000 },
    async () => {
      const sessionId = await session();
      // the client's keep-alive socket is trusted now; 1,100 more unfinished connections come in
      const port = Number(new URL(server.url).port);
      const sockets = await Promise.all(
        Array.from(
          { length: HALF_OPEN },
          () =>
            new Promise<net.Socket>((resolve) => {
              const s = net.connect(port, "127.0.0.1", () => resolve(s));
              s.on("error", () => resolve(s));
            }),
        ),
      );
      try {
        for (let i = 0; i < 5; i++) {
          const r = await post(server, `/v1/sessions/${sessionId}/append`, { base: 0, tokens: [1, 2] });
          expect(r.status).toBe(200);
        }
      } finally {
        for (const s of sockets) s.destroy();
      }
    },
  );

  it("router uploads: each malformed field is a 400 with a short JSON error; an accepted upload streams a whole /route", async () => {
    const sessionId = await session();
    const good = () =>
      encodeRouterFile({
        slm: { name: identity.name, vocabHash: identity.vocabHash, hiddenSize: slm.hiddenSize },
        features: { hidden: true, top1: true, dist: true, topK: 4 },
        params: initMlp([slm.hiddenSize + 3, 4, 1], 3),
      }) as unknown as Record<string, Record<string, unknown>>;
    const cases: [string, (u: Record<string, Record<string, unknown>>) => unknown][] = [
      ["weights null", (u) => ({ ...u, network: { ...u.network, weights: null } })],
      ["weights a number", (u) => ({ ...u, network: { ...u.network, weights: 5 } })],
      ["a weight a number", (u) => ({ ...u, network: { ...u.network, weights: [1, 2] } })],
      ["sizes a number", (u) => ({ ...u, network: { ...u.network, sizes: 5 } })],
      ["sizes fractional", (u) => ({ ...u, network: { ...u.network, sizes: [slm.hiddenSize + 3, 2.5, 1] } })],
      ["sizes of strings", (u) => ({ ...u, network: { ...u.network, sizes: [String(slm.hiddenSize + 3), "4", "1"] } })],
      ["mean missing", (u) => ({ ...u, network: { ...u.network, mean: undefined } })],
      ["std null", (u) => ({ ...u, network: { ...u.network, std: null } })],
      ["network missing", (u) => ({ ...u, network: undefined })],
      ["features missing", (u) => ({ ...u, features: undefined })],
      ["features null", (u) => ({ ...u, features: null })],
      ["features.hidden a string", (u) => ({ ...u, features: { ...u.features, hidden: "yes" } })],
      ["features.topK huge", (u) => ({ ...u, features: { ...u.features, topK: 1e9 } })],
      ["features.topK fractional", (u) => ({ ...u, features: { ...u.features, topK: 2.5 } })],
      ["slm missing", (u) => ({ ...u, slm: undefined })],
      ["slm.hiddenSize a string", (u) => ({ ...u, slm: { ...u.slm, hiddenSize: "64" } })],
      ["version a string", (u) => ({ ...u, version: "1" })],
      ["an array", () => [1, 2, 3]],
      ["a number", () => 7],
      ["null", () => null],
      [
        "weights too short",
        (u) => ({
          ...u,
          network: { ...u.network, weights: [(u.network.weights as string[])[0]!.slice(0, 8), (u.network.weights as string[])[1]] },
        }),
      ],
      ["input width not the features'", (u) => ({ ...u, features: { ...u.features, dist: false } })],
    ];
    for (const [name, mutate] of cases) {
      const r = await post(server, `/v1/sessions/${sessionId}/router`, mutate(good()));
      const text = await r.text();
      expect(r.status, `${name}: ${text}`).toBe(400);
      expect(r.headers.get("content-type")).toMatch(/application\/json/);
      const body = JSON.parse(text) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("bad_request");
      expect(body.error.message.length, name).toBeLessThan(300);
      expect(body.error.message, name).not.toMatch(/\n\s+at /);
    }
    expect(server.stats().errors.internal ?? 0).toBe(0);
    expect(logs.filter((l) => /failed:/.test(l))).toEqual([]);
    // accepted uploads (every feature combination) each stream a whole /route, no error line
    for (const features of [
      { hidden: true, top1: true, dist: true, topK: 4 },
      { hidden: false, top1: true, dist: false, topK: 0 },
      { hidden: false, top1: false, dist: true, topK: 0 },
      { hidden: false, top1: false, dist: true, topK: 64 },
    ]) {
      const inputs = (features.hidden ? slm.hiddenSize : 0) + (features.top1 ? 1 : 0) + (features.dist ? 2 : 0);
      const upload = encodeRouterFile({
        slm: { name: identity.name, vocabHash: identity.vocabHash, hiddenSize: slm.hiddenSize },
        features,
        params: initMlp([inputs, 3, 1], 5),
      });
      const up = await post(server, `/v1/sessions/${sessionId}/router`, upload);
      expect(up.status, JSON.stringify(features)).toBe(200);
      const { digest } = (await up.json()) as { digest: string };
      const r = await post(server, `/v1/sessions/${sessionId}/route`, {
        base: 0,
        tokens: [1, 2, 3],
        tau: 0.5,
        router: { kind: "mlp", digest },
        position: 0,
        max: 8,
      });
      expect(r.status).toBe(200);
      const lines = (await r.text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(
        lines.some((l) => "error" in l),
        JSON.stringify(lines.at(-1)),
      ).toBe(false);
      expect(lines.at(-1)).toHaveProperty("end");
    }
  });

  it("--no-auth on loopback: a browser's requests (Origin, a non-JSON body, a foreign Host) are refused; the device's client is served", async () => {
    const create = { protocol: PROTOCOL_VERSION, client: identity };
    const send = (headers: Record<string, string>, body = JSON.stringify(create)) =>
      fetch(open.url + "/v1/sessions", { method: "POST", headers, body });
    // what a page's no-cors fetch sends: a text/plain body, and an Origin
    const page = await send({ "content-type": "text/plain;charset=UTF-8", origin: "https://evil.example" });
    expect(page.status).toBe(403);
    expect(((await page.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    expect((await send({ "content-type": "text/plain" })).status).toBe(415);
    expect((await send({ "content-type": "application/x-www-form-urlencoded" })).status).toBe(415);
    expect((await send({})).status).toBe(415);
    expect((await send({ "content-type": "application/json", origin: "null" })).status).toBe(403);
    // a DNS-rebound name: same-origin for the page, so no CORS preflight, but its Host is not loopback
    const port = Number(new URL(open.url).port);
    const rebound = await rawRequest(
      port,
      `POST /v1/sessions HTTP/1.1\r\nHost: evil.example:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(JSON.stringify(create))}\r\nConnection: close\r\n\r\n${JSON.stringify(create)}`,
    );
    expect(rebound !== "closed" && rebound.status).toBe(403);
    expect(open.stats().sessions).toBe(0);
    // the device's client (no Origin, JSON, a loopback Host) is served
    const ok = await send({ "content-type": "application/json; charset=utf-8" });
    expect(ok.status).toBe(200);
    const { sessionId } = (await ok.json()) as { sessionId: string };
    expect((await fetch(`${open.url}/v1/sessions/${sessionId}`, { method: "DELETE" })).status).toBe(200);
    // the authenticated server is unchanged: a token holder's request with other content types still works
    const id = await session();
    const plain = await post(server, `/v1/sessions/${id}/append`, JSON.stringify({ base: 0, tokens: [] }), {
      "content-type": "text/plain",
    });
    expect(plain.status).toBe(200);
  });

  it("no handler lets an exception escape: odd URLs, methods and headers are answered 4xx, the server stays up", async () => {
    const port = Number(new URL(server.url).port);
    const auth = `Authorization: Bearer ${TOKEN}\r\n`;
    const probes: [string, string][] = [
      ["a lone %-escape", `GET /%E0.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ["a %-escape in a session id", `DELETE /v1/sessions/%E0%A4 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`],
      ["a bare %", `POST /v1/sessions/% HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 0\r\nConnection: close\r\n\r\n`],
      ["an absolute-form URL", `GET http://127.0.0.1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ["OPTIONS *", `OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ["an Upgrade request", `GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`],
      [
        "Expect: 100-continue",
        `POST /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n{}`,
      ],
      ["an unknown Expect", `POST /v1/sessions HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`],
      ["a double slash", `GET //health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ["a path with dots", `POST /v1/sessions/../sessions HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 0\r\nConnection: close\r\n\r\n`],
      ["a 20 kB path", `GET /${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ["an unknown method", `BREW /v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ["HEAD /health", `HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      [
        "two Content-Lengths",
        `POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}`,
      ],
      [
        "two Authorization headers",
        `POST /v1/sessions HTTP/1.1\r\nHost: x\r\n${auth}${auth}Content-Length: 0\r\nConnection: close\r\n\r\n`,
      ],
    ];
    for (const [name, request] of probes) {
      const r = await rawRequest(port, request);
      expect(r, name).not.toBe("closed");
      const { status } = r as Raw;
      // /health answers GET (and an absolute-form or upgrade request for it); everything else is a 4xx
      if (status !== 200) expect(status, `${name}: ${(r as Raw).text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(status, name).toBeLessThan(500);
    }
    expect(server.stats().errors.internal ?? 0).toBe(0);
    expect(logs.filter((l) => /failed:|cannot answer/.test(l))).toEqual([]);
    const health = await fetch(server.url + "/health");
    expect(health.status).toBe(200);
  });
});
