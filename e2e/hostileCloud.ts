/**
 * A hostile cloud for the UI tests: it speaks Tandem's token protocol (shared/protocol.ts) with the
 * device model's vocabulary, and whenever the device asks it for a token it answers with the next
 * token of a script — token IDs that spell out HTML and script. At τ = 1 every token of an answer comes
 * from the cloud, so the answer the app streams, stores and renders is exactly that text: model output
 * produced the way real model output is (token IDs → the device's detokeniser → the stream → the UI).
 * It is also what a compromised or malicious cloud server could send.
 *
 * It checks the bearer token like the real server (401 with the same error body), so the UI's handling
 * of a refused token can be seen too.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ModelIdentity } from "../shared/protocol.js";

export interface HostileCloud {
  url: string;
  token: string;
  /** /next calls answered */
  calls(): number;
  close(): Promise<void>;
}

export async function startHostileCloud(opts: {
  device: ModelIdentity;
  script: readonly number[];
  eos: number;
  token: string;
}): Promise<HostileCloud> {
  const sessions = new Map<string, number[]>();
  let nextCalls = 0;
  let nextId = 1;
  const model: ModelIdentity = { ...opts.device, name: "hostile cloud (scripted)" };

  /** How much of the script the history already ends with: where the answer being written stands. */
  const scriptDone = (history: readonly number[]): number => {
    for (let k = Math.min(opts.script.length, history.length); k > 0; k--) {
      let match = true;
      for (let i = 0; i < k && match; i++) match = history[history.length - k + i] === opts.script[i];
      if (match) return k;
    }
    return 0;
  };

  const server = http.createServer(async (req, res) => {
    const send = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    let raw = "";
    for await (const chunk of req) raw += chunk;
    if (req.headers.authorization !== `Bearer ${opts.token}`) {
      return send(401, { error: { code: "unauthorized", message: "Missing or wrong access token (Authorization: Bearer <token>)" } });
    }
    const body = raw ? (JSON.parse(raw) as { base?: number; tokens?: number[] }) : {};
    const m = /^\/v1\/sessions(?:\/([^/]+)(?:\/(next|append))?)?$/.exec(req.url ?? "");
    if (!m) return send(404, { error: { code: "not_found", message: "not found" } });
    const [, id, action] = m;
    if (req.method === "POST" && !id) {
      const sid = `s${nextId++}`;
      sessions.set(sid, []);
      return send(200, { sessionId: sid, model, contextSize: 4096 });
    }
    const held = id ? sessions.get(id) : undefined;
    if (!held) return send(404, { error: { code: "session_not_found", message: "no such session" } });
    if (req.method === "DELETE") {
      sessions.delete(id);
      return send(200, { ok: true });
    }
    const base = body.base ?? 0;
    if (base > held.length) return send(409, { error: { code: "out_of_sync", message: "base beyond the session", length: held.length } });
    held.splice(base, held.length - base, ...(body.tokens ?? []));
    if (action === "append") return send(200, { length: held.length, evaluated: body.tokens?.length ?? 0 });
    nextCalls++;
    const k = scriptDone(held);
    const tokenId = k < opts.script.length ? opts.script[k] : opts.eos;
    return send(200, { tokenId, logprob: -0.01, top: [], length: held.length, evaluated: body.tokens?.length ?? 0 });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    token: opts.token,
    calls: () => nextCalls,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
