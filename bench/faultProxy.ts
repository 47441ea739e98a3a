/**
 * A fault-injecting HTTP proxy on loopback, in front of a real cloud token server. Faults apply to
 * requests whose path matches `match` (default: token calls), so sessions can still be created.
 *
 * A delay of `ms` is a round trip: half on the way to the server, half on the way back. A streamed
 * reply (NDJSON: /route) is passed on line by line, each line half a round trip after the server
 * wrote it, as a network would; `lineRule` can delay or break the stream at any line.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export type Fault =
  | { kind: "pass" }
  | { kind: "delay"; ms: number }
  | { kind: "status"; status: number }
  | { kind: "garbage" }
  | { kind: "reset" }
  | { kind: "rewrite"; body: (json: Record<string, unknown>) => unknown };

/** One request as the proxy saw it; `body` is the parsed JSON body, if any. */
export interface ProxiedRequest {
  method: string;
  path: string;
  body: unknown;
  /** other requests to the same path kind (/next, /append, ...) still unanswered when this one arrived */
  alongside: number;
}

export interface FaultProxy {
  url: string;
  fault: Fault;
  match: RegExp;
  /** when set, decides the fault of every request instead of `fault`/`match` (it may act first, e.g. restart the server) */
  rule?: (req: ProxiedRequest) => Fault | Promise<Fault>;
  /**
   * For streamed replies: the fault of each line (`index` from 0), applied on top of the request's
   * delay. "delay" holds that line (and so the ones after it) back; "rewrite" replaces it; "status",
   * "reset" and "garbage" break the stream there (the connection drops; "garbage" sends half a line first).
   */
  lineRule?: (req: ProxiedRequest, line: unknown, index: number) => Fault;
  /** every request passed through, in arrival order */
  seen: ProxiedRequest[];
  /** requests that matched `match` */
  hits: number;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const proxy: FaultProxy = { url: "", fault: { kind: "pass" }, match: /\/next$/, hits: 0, seen: [], close: async () => {} };
  /** requests in progress per last path segment */
  const open = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const matched = proxy.match.test(req.url ?? "");
      const kind = (req.url ?? "").replace(/^.*\//, "");
      const seen: ProxiedRequest = {
        method: req.method ?? "",
        path: req.url ?? "",
        body: parseJson(Buffer.concat(chunks)),
        alongside: open.get(kind) ?? 0,
      };
      open.set(kind, seen.alongside + 1);
      res.on("close", () => open.set(kind, (open.get(kind) ?? 1) - 1));
      proxy.seen.push(seen);
      const fault: Fault = proxy.rule ? await proxy.rule(seen) : matched ? proxy.fault : { kind: "pass" };
      if (matched) proxy.hits++;
      if (fault.kind === "reset") return req.socket.destroy();
      if (fault.kind === "status") {
        res.writeHead(fault.status, { "content-type": "text/plain" });
        return res.end("injected failure");
      }
      if (fault.kind === "garbage") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end('{"tokenId": 12, "logprob": -0.1, "top": [');
      }
      const half = fault.kind === "delay" ? fault.ms / 2 : 0;
      if (half > 0) await sleep(half);
      const up = http.request(
        // a connection per request: a pooled one may be a dead socket to a server the test restarted,
        // which would fail one client's request and not the other's
        { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers, agent: false },
        (upRes) => {
          if (/ndjson/.test(String(upRes.headers["content-type"])))
            return relayStream(upRes, res, half, (line, i) => proxy.lineRule?.(seen, line, i) ?? { kind: "pass" });
          const body: Buffer[] = [];
          upRes.on("data", (c: Buffer) => body.push(c));
          upRes.on("end", async () => {
            let out = Buffer.concat(body);
            if (fault.kind === "rewrite" && upRes.statusCode === 200) {
              out = Buffer.from(JSON.stringify(fault.body(JSON.parse(out.toString()))));
            }
            if (half > 0) await sleep(half);
            const headers = { ...upRes.headers, "content-length": String(out.length) };
            res.writeHead(upRes.statusCode ?? 502, headers);
            res.end(out);
          });
        },
      );
      up.on("error", () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      res.on("close", () => up.destroy()); // the client left: so does the proxy's request (the server sees it go)
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return proxy;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Passes a streamed reply on line by line, each `delay` ms after it arrived (in order), applying each
 * line's fault.
 */
function relayStream(
  upRes: http.IncomingMessage,
  res: http.ServerResponse,
  delay: number,
  faultOf: (line: unknown, index: number) => Fault,
): void {
  const headers = { ...upRes.headers };
  delete headers["content-length"];
  res.writeHead(upRes.statusCode ?? 502, headers);
  let buffered = "";
  let index = 0;
  let chain = Promise.resolve();
  let broken = false;
  const send = (text: string, fault: Fault) => {
    // due half a round trip after it arrived, not after the line before it was sent
    const due = performance.now() + delay + (fault.kind === "delay" ? fault.ms : 0);
    chain = chain.then(async () => {
      if (broken || res.destroyed) return;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (fault.kind === "status" || fault.kind === "reset" || fault.kind === "garbage") {
        broken = true;
        if (fault.kind === "garbage") res.write(text.slice(0, Math.floor(text.length / 2)));
        upRes.destroy();
        res.socket?.destroy();
        return;
      }
      res.write(fault.kind === "rewrite" ? JSON.stringify(fault.body(JSON.parse(text) as Record<string, unknown>)) + "\n" : text);
    });
  };
  upRes.on("data", (c: Buffer) => {
    buffered += c.toString();
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const text = buffered.slice(0, nl + 1);
      buffered = buffered.slice(nl + 1);
      send(text, faultOf(parseJson(Buffer.from(text)), index++));
    }
  });
  upRes.on("end", () => {
    chain = chain.then(() => {
      if (!broken) res.end(buffered);
    });
  });
  upRes.on("error", () => res.destroy());
}

function parseJson(b: Buffer): unknown {
  try {
    return b.length ? JSON.parse(b.toString()) : undefined;
  } catch {
    return undefined;
  }
}
