/** The server's Forget (POST /v1/sessions/:id/forget): authenticated, validated, confirmed, and the session is gone. */
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ForgetResponseSchema } from "../../shared/protocol.js";
import { LocalModel } from "../../inference/localModel.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { randomQwenPair, storiesPair } from "../helpers/pair.js";

describe("Forget on the token server", () => {
  let server: CloudServer;
  let slm: LocalModel;
  const token = randomBytes(12).toString("hex");
  const post = (path: string, body: unknown, auth = true) =>
    fetch(server.url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...(auth ? { authorization: `Bearer ${token}` } : {}) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });

  beforeAll(async () => {
    const pair = (await storiesPair()) ?? (await randomQwenPair());
    server = await startCloudServer({ modelPath: pair.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    slm = await LocalModel.load(pair.slm, { contextSize: 256 });
  });
  afterAll(async () => {
    await server?.close();
    await slm?.dispose();
  });

  it("the client's forget deletes its session, the server confirms it, and the next call opens a new one", async () => {
    const client = new TandemCloudClient({ url: server.url, token });
    await client.connect(slm.identity);
    const history = slm.tokenizeText("Once upon a time");
    await client.next(history);
    const first = client.session!;
    expect(server.memory().tokensHeld).toBeGreaterThanOrEqual(history.length);
    const r = await client.forget();
    expect(r).toEqual({ forgotten: true, existed: true, tokensDropped: expect.any(Number) });
    expect(r!.tokensDropped).toBeGreaterThanOrEqual(history.length);
    expect(server.stats().sessions).toBe(0);
    expect(server.memory().tokensHeld).toBe(0);
    // the old session is gone for good
    const gone = await post(`/v1/sessions/${first}/next`, { base: 0, tokens: [1] });
    expect(gone.status).toBe(404);
    // the client goes on with a new session, synced from the start
    await client.next(history);
    expect(client.session).not.toBe(first);
    await client.close();
  });

  it("is refused without the token, with a malformed body, or for something that is not a session id", async () => {
    const id = randomUUID();
    expect((await post(`/v1/sessions/${id}/forget`, { forget: true }, false)).status).toBe(401);
    for (const body of [{}, { forget: false }, "not json", { forget: true, extra: "x".repeat(2_000_000) }]) {
      const res = await post(`/v1/sessions/${id}/forget`, body);
      expect([400, 413]).toContain(res.status);
      expect((await res.json()).error.code).toMatch(/bad_request|payload_too_large/);
    }
    expect((await post(`/v1/sessions/not-a-session/forget`, { forget: true })).status).toBe(404);
    const get = await fetch(`${server.url}/v1/sessions/${id}/forget`, { headers: { authorization: `Bearer ${token}` } });
    expect(get.status).toBe(405);
  });

  it("a session the server does not have is confirmed as holding nothing", async () => {
    const res = await post(`/v1/sessions/${randomUUID()}/forget`, { forget: true });
    expect(res.status).toBe(200);
    expect(ForgetResponseSchema.parse(await res.json())).toEqual({ forgotten: true, existed: false, tokensDropped: 0 });
  });
});
