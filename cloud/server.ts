/**
 * The cloud token server: the LLM side of token-level routing, over HTTP + JSON (shared/protocol.ts).
 *
 * Requests are tiny and frequent (one per cloud-routed token), so connections are kept alive and the
 * per-request work outside the model is a few map lookups. Nothing a client sends can crash the
 * process: bodies are bounded and validated field by field, and any unexpected error becomes a
 * generic 500 while the details go to the log.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { LlamaModel } from "node-llama-cpp";
import {
  PROTOCOL_LIMITS,
  PROTOCOL_VERSION,
  type CreateSessionResponse,
  type HealthResponse,
  type ModelIdentity,
} from "../shared/protocol.js";
import { getTandemLlama } from "../shared/node/llama.js";
import { loadModelFile, modelIdentity, resolveModelSource, VocabularyMismatchError } from "../shared/node/modelFile.js";
import { bearerVerifier, checkTokenStrength, isLoopbackHost, parseBearer, tokenTag, type BearerVerifier } from "./auth.js";
import { CloudError } from "./errors.js";
import { readBody, sendJson } from "./http.js";
import { DEFAULT_RATE_LIMIT, TokenBucketLimiter, type RateLimitOptions } from "./rateLimit.js";
import { SessionManager, type SessionStats } from "./sessions.js";
import { parseAppend, parseCreateSession, parseJson, parseNext, parseTruncate } from "./validate.js";

export interface CloudServerOptions {
  /** a GGUF path or an `hf:` URI / URL (downloaded if missing); ignored when `model` is given */
  modelPath?: string;
  /** an already loaded model; the server does not dispose it */
  model?: LlamaModel;
  /** default 127.0.0.1 */
  host?: string;
  /** default 8788; 0 picks a free port */
  port?: number;
  /** the bearer token clients must present (at least 16 printable characters) */
  token?: string;
  /** run without a token: allowed only on a loopback address */
  allowNoAuth?: boolean;
  /** concurrent sessions = sequences of the shared context (default 8) */
  maxSessions?: number;
  /** tokens per session (default: the model's training context, at most 4096) */
  contextSize?: number;
  /** sessions idle this long may be evicted (default 10 min) */
  idleTimeoutMs?: number;
  /** sessions one client (token + IP) may hold (default: maxSessions) */
  maxSessionsPerClient?: number;
  /** per-client request rate; false turns it off (default 500/s, bursts of 1000) */
  rateLimit?: RateLimitOptions | false;
  /** context threads (default: threadsFor(model size)) */
  threads?: number;
  /** where errors and notices go (default: stderr) */
  log?: (message: string) => void;
}

export interface CloudServerStats extends SessionStats {
  httpRequests: number;
  /** error responses by code */
  errors: Record<string, number>;
  uptimeMs: number;
}

export interface CloudServer {
  /** base URL, e.g. http://127.0.0.1:8788 */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly identity: ModelIdentity;
  /** tokens one session can hold */
  readonly contextSize: number;
  readonly maxSessions: number;
  /** whether clients must present a token */
  readonly authRequired: boolean;
  stats(): CloudServerStats;
  /** Stops listening, drops connections, frees the sessions and the context (and the model if loaded here). */
  close(): Promise<void>;
}

export const DEFAULT_PORT = 8788;
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export async function startCloudServer(opts: CloudServerOptions): Promise<CloudServer> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.log ?? ((m: string) => console.error(m));
  // refuse a bad security configuration before spending time on the model
  const verify = authConfig(opts, host);

  let model: LlamaModel;
  let ownsModel = false;
  let threads = opts.threads;
  if (opts.model) {
    model = opts.model;
  } else if (opts.modelPath) {
    const file = await resolveModelSource(opts.modelPath);
    const loaded = await loadModelFile(await getTandemLlama(), file);
    model = loaded.model;
    ownsModel = true;
    threads ??= loaded.threads;
  } else {
    throw new Error("startCloudServer needs a model: pass modelPath or model");
  }

  let sessions: SessionManager | undefined;
  try {
    const identity = modelIdentity(model);
    sessions = await SessionManager.create({
      model,
      vocabSize: identity.vocabSize,
      maxSessions: opts.maxSessions,
      contextSize: opts.contextSize,
      threads,
      idleTimeoutMs: opts.idleTimeoutMs,
      maxSessionsPerOwner: opts.maxSessionsPerClient,
    });
    const api = new Api(sessions, identity, verify, opts.rateLimit === false ? undefined : new TokenBucketLimiter(opts.rateLimit ?? DEFAULT_RATE_LIMIT), log);
    const server = http.createServer((req, res) => void api.handle(req, res));
    // clients hold connections open between tokens; Node's 5 s default would make them reconnect often
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000; // must exceed keepAliveTimeout
    server.on("clientError", (err, socket) => {
      // malformed HTTP never reaches the handler; answer it here instead of letting Node log and crash
      if (socket.writable && !("code" in err && err.code === "ECONNRESET")) {
        socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      } else socket.destroy();
    });

    const address = await listen(server, host, opts.port ?? DEFAULT_PORT);
    if (!verify && !isLoopbackHost(address.address)) {
      // `host` was a name that resolved to a non-loopback address: never serve that without a token
      await closeServer(server);
      throw new Error(`Refusing to run without a token: ${host} resolved to ${address.address}, which is not a loopback address`);
    }
    server.on("error", (err) => log(`tandem cloud: server error: ${err.message}`));
    const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const startedAt = Date.now();
    const manager = sessions;
    let closing: Promise<void> | undefined;
    return {
      url: `http://${urlHost}:${address.port}`,
      host: address.address,
      port: address.port,
      identity,
      contextSize: manager.capacity,
      maxSessions: manager.maxSessions,
      authRequired: verify !== undefined,
      stats: () => ({ ...manager.stats(), httpRequests: api.requests, errors: { ...api.errors }, uptimeMs: Date.now() - startedAt }),
      close: () =>
        (closing ??= (async () => {
          await closeServer(server);
          await manager.dispose();
          if (ownsModel) await model.dispose();
        })()),
    };
  } catch (err) {
    await sessions?.dispose();
    if (ownsModel) await model.dispose();
    throw err;
  }
}

/** The token verifier, or undefined for an allowed no-auth server; throws on an unsafe configuration. */
function authConfig(opts: CloudServerOptions, host: string): BearerVerifier | undefined {
  if (opts.token !== undefined) {
    checkTokenStrength(opts.token);
    return bearerVerifier(opts.token);
  }
  if (!opts.allowNoAuth) {
    throw new Error("The cloud server needs an access token (or, on a loopback address only, explicit permission to run without one)");
  }
  if (!isLoopbackHost(host)) {
    throw new Error(`Refusing to run without a token on ${host}: that is reachable from other machines; set a token or bind to 127.0.0.1`);
  }
  return undefined;
}

/** Routes, authentication, rate limiting and error mapping around the session manager. */
class Api {
  requests = 0;
  readonly errors: Record<string, number> = {};

  constructor(
    private readonly sessions: SessionManager,
    private readonly identity: ModelIdentity,
    private readonly verify: BearerVerifier | undefined,
    private readonly limiter: TokenBucketLimiter | undefined,
    private readonly log: (message: string) => void,
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.requests++;
    try {
      await this.route(req, res);
    } catch (err) {
      try {
        this.fail(req, res, err);
      } catch (failure) {
        this.log(`tandem cloud: cannot answer a failed request: ${String(failure)}`);
        res.destroy();
      }
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req.url);
    if (path === "/health") {
      allowMethods(req, "GET");
      const health: HealthResponse = {
        ok: true,
        protocol: PROTOCOL_VERSION,
        model: this.identity,
        sessions: this.sessions.size,
        maxSessions: this.sessions.maxSessions,
        contextSize: this.sessions.capacity,
      };
      return sendJson(res, 200, health);
    }

    const client = this.admit(req);
    if (path === "/v1/sessions") {
      allowMethods(req, "POST");
      const request = parseCreateSession(parseJson(await readBody(req, PROTOCOL_LIMITS.maxBodyBytes)));
      const { client: device } = request;
      if (device.vocabHash !== this.identity.vocabHash || device.vocabSize !== this.identity.vocabSize) {
        throw new CloudError("vocab_mismatch", new VocabularyMismatchError(device, this.identity).message);
      }
      const { sessionId } = await this.sessions.open(client);
      const body: CreateSessionResponse = { sessionId, model: this.identity, contextSize: this.sessions.capacity };
      return sendJson(res, 200, body);
    }

    const m = /^\/v1\/sessions\/([^/]+)(?:\/(next|append|truncate))?$/.exec(path);
    if (!m) throw new CloudError("not_found", `No such endpoint: ${path}`);
    const [, id, action] = m;
    allowMethods(req, action ? "POST" : "DELETE");
    const body = await readBody(req, PROTOCOL_LIMITS.maxBodyBytes);
    // ids are UUIDs; anything else cannot name a session (and is not echoed back at length)
    if (!SESSION_ID.test(id)) throw new CloudError("session_not_found", "No such session");
    const vocab = this.identity.vocabSize;
    switch (action) {
      case undefined:
        await this.sessions.delete(id);
        return sendJson(res, 200, { ok: true });
      case "next": {
        const r = parseNext(parseJson(body), vocab);
        return sendJson(res, 200, await this.sessions.next(id, r.base, r.tokens, r.topK));
      }
      case "append": {
        const r = parseAppend(parseJson(body), vocab);
        return sendJson(res, 200, await this.sessions.append(id, r.base, r.tokens));
      }
      case "truncate": {
        const r = parseTruncate(parseJson(body));
        return sendJson(res, 200, await this.sessions.truncate(id, r.length));
      }
    }
  }

  /** Rate limit, then authentication; returns the client key (token tag + IP) for per-client limits. */
  private admit(req: IncomingMessage): string {
    const authorized = this.verify ? this.verify(req.headers.authorization) : true;
    const presented = parseBearer(req.headers.authorization);
    // unauthenticated requests share one bucket per IP, so spraying made-up tokens buys no extra budget
    const tag = !this.verify ? "open" : authorized && presented ? tokenTag(presented) : "unauthenticated";
    const client = `${tag}|${req.socket.remoteAddress ?? "?"}`;
    const waitMs = this.limiter?.take(client) ?? 0;
    if (waitMs > 0) throw new RateLimited(waitMs);
    if (!authorized) throw new CloudError("unauthorized", "Missing or wrong access token (Authorization: Bearer <token>)");
    return client;
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    let error: CloudError;
    if (err instanceof CloudError) {
      error = err;
    } else {
      this.log(`tandem cloud: ${req.method} ${pathOf(req.url)} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      error = new CloudError("internal", "Internal server error");
    }
    this.errors[error.code] = (this.errors[error.code] ?? 0) + 1;
    if (res.headersSent) {
      res.destroy(); // cannot send an error after a response has started: make the failure visible
      return;
    }
    const headers: Record<string, string> = {};
    // the rest of an oversized body stays unread: close the connection instead of draining it
    if (error.code === "payload_too_large") headers.connection = "close";
    if (err instanceof RateLimited) headers["retry-after"] = String(Math.max(1, Math.ceil(err.waitMs / 1000)));
    if (err instanceof MethodNotAllowed) headers.allow = err.allow;
    sendJson(res, err instanceof MethodNotAllowed ? 405 : error.status, error.toBody(), headers);
  }
}

class RateLimited extends CloudError {
  constructor(readonly waitMs: number) {
    super("rate_limited", `Too many requests; retry in ${waitMs} ms`);
  }
}

/** 405 carries the protocol's bad_request code: the protocol has no code of its own for it. */
class MethodNotAllowed extends CloudError {
  constructor(
    method: string | undefined,
    readonly allow: string,
  ) {
    super("bad_request", `Method ${method ?? "?"} not allowed here; use ${allow}`);
  }
}

function allowMethods(req: IncomingMessage, allow: string): void {
  if (req.method !== allow) throw new MethodNotAllowed(req.method, allow);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? "/";
  const q = raw.indexOf("?");
  return q < 0 ? raw : raw.slice(0, q);
}

function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new Error(
          err.code === "EADDRINUSE"
            ? `Port ${port} on ${host} is already in use; choose another with --port`
            : `Cannot listen on ${host}:${port}: ${err.message}`,
        ),
      );
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.removeListener("error", onError);
      resolve(server.address() as AddressInfo); // a TCP server's address is always an AddressInfo
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections(); // keep-alive connections would otherwise hold close() open
  });
}
