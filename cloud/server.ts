/**
 * The cloud token server: the LLM side of token-level routing, over HTTP + JSON (shared/protocol.ts).
 *
 * Requests are tiny and frequent (one per cloud-routed token), so connections are kept alive and the
 * per-request work outside the model is a few map lookups. Nothing a client sends can crash the
 * process: bodies are bounded and validated field by field, and any unexpected error becomes a
 * generic 500 while the details go to the log.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import {
  PROTOCOL_LIMITS,
  PROTOCOL_VERSION,
  type CreateSessionResponse,
  type ForgetResponse,
  type HealthResponse,
  type ModelIdentity,
  type RouteLine,
  type RouteRequest,
  type RouterUploadResponse,
} from "../shared/protocol.js";
import { getTandemLlama } from "../inference/llama.js";
import { loadModelFile, modelIdentity, resolveModelSource, VocabularyMismatchError } from "../inference/modelFile.js";
import { bearerVerifier, checkTokenStrength, isLoopbackHost, parseBearer, tokenTag, type BearerVerifier } from "./auth.js";
import { CloudError } from "./errors.js";
import { readBody, sendJson } from "./http.js";
import { DEFAULT_RATE_LIMIT, TokenBucketLimiter, type RateLimitOptions } from "./rateLimit.js";
import { MIB } from "./memory.js";
import { ConnectionGuard, type ConnectionLimits, type ConnectionStats } from "./connections.js";
import { SessionManager, type MemoryStats, type QueueStats, type SessionStats, type SessionUsage } from "./sessions.js";
import { parseAppend, parseCreateSession, parseJson, parseNext, parseRoute, parseTruncate, parseForget } from "./validate.js";
import { SlmReplica } from "./replica.js";
import { checkRouterUpload } from "./routerUpload.js";
import { errorMessage } from "../shared/errors.js";

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
  /** concurrent sessions = sequences of the shared context (default 8, or as many as fit `maxKvMb`; at most 256) */
  maxSessions?: number;
  /**
   * KV-cache budget in MiB: maxSessions × contextSize must fit (checked before anything is allocated),
   * or maxSessions is derived from it when not given. Default: no budget.
   */
  maxKvMb?: number;
  /** requests one session may have waiting for the model (default 8); more get 429 */
  maxQueuedPerSession?: number;
  /** requests waiting for the model across all sessions (default max(32, 4 × maxSessions)); more get 503 */
  maxQueued?: number;
  /**
   * open connections (default 1024). At the cap the oldest connection that has not yet made an
   * authenticated request and has none in progress is closed for the newcomer (cloud/connections.ts).
   */
  maxConnections?: number;
  /** open connections from one remote address (default 256), same rule at the cap */
  maxConnectionsPerAddress?: number;
  /** how long a request's headers may take to arrive, ms (default 5000): unfinished sockets go then */
  headersTimeoutMs?: number;
  /**
   * Which llama.cpp backend to load `modelPath` with: "auto" picks CUDA, Vulkan or Metal when one works
   * and falls back to the CPU; false is CPU only. Default: the process's shared runtime
   * (inference/llama.ts: Metal on Apple Silicon, CPU elsewhere). Ignored when `model` is given.
   */
  gpu?: "auto" | "cuda" | "vulkan" | "metal" | false;
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
  /**
   * The device's SLM (a GGUF path or URI), to replicate its routed decoding (/route: one round trip
   * for a stretch of routed positions). Loaded on the same runtime as the LLM.
   */
  replicaModelPath?: string;
  /** conversations the replica follows at once (default 4) */
  replicaSlots?: number;
}

export interface CloudServerStats extends SessionStats {
  httpRequests: number;
  /** error responses by code */
  errors: Record<string, number>;
  /** error responses by HTTP status */
  statuses: Record<string, number>;
  uptimeMs: number;
  /** open sockets, and those closed or refused at the connection caps (cloud/connections.ts) */
  connections: ConnectionStats;
}

/** Where the model runs. */
export interface RuntimeInfo {
  /** the llama.cpp backend: "cuda", "vulkan", "metal", or false for the CPU */
  gpu: string | false;
  /** layers offloaded to the GPU, of totalLayers */
  gpuLayers: number;
  totalLayers: number;
}

/**
 * What /health adds for a client that presents the server's token: load and memory for operators
 * (and the fuzz and soak tests). Aggregates only, no session IDs: a session ID is all that separates
 * one token holder's session from another's.
 */
export interface HealthDetail {
  runtime: RuntimeInfo;
  memory: MemoryStats & {
    /** this process, from process.memoryUsage() */
    process: { rssBytes: number; heapUsedBytes: number; externalBytes: number };
  };
  queue: QueueStats;
  sessions: SessionUsage[];
  stats: CloudServerStats;
}

export type CloudHealthResponse = HealthResponse & { detail?: HealthDetail };

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
  readonly runtime: RuntimeInfo;
  /** the device SLM this server replicates for /route, if any */
  readonly replica: ModelIdentity | undefined;
  stats(): CloudServerStats;
  /** KV memory: per token, allocated, budget, in use */
  memory(): MemoryStats;
  /** Stops listening, drops connections, frees the sessions and the context (and the model if loaded here). */
  close(): Promise<void>;
}

export const DEFAULT_PORT = 8788;
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;
/** headers are a few hundred bytes: a client that takes seconds for them is stalled or hostile */
export const DEFAULT_HEADERS_TIMEOUT_MS = 5000;
/** pending connections the kernel queues for the server to accept (see listen) */
const LISTEN_BACKLOG = 4096;
/** how long a socket answered with a protocol error (400, 408, 431) may take to read it before it is destroyed */
const CLOSE_GRACE_MS = 1000;
/** what a POST to /v1/sessions/:id/… may ask */
type SessionAction = "next" | "append" | "truncate" | "route" | "router" | "forget";
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export async function startCloudServer(opts: CloudServerOptions): Promise<CloudServer> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.log ?? ((m: string) => console.error(m));
  // refuse a bad security configuration before spending time on the model
  const verify = authConfig(opts, host);
  const { model, ownsModel, threads } = await serverModel(opts);
  let sessions: SessionManager | undefined;
  let replica: SlmReplica | undefined;
  try {
    const identity = modelIdentity(model);
    sessions = await createSessions(model, identity.vocabSize, threads, opts);
    replica = await loadReplica(model, identity, sessions.capacity, opts);
    const runtime: RuntimeInfo = { gpu: model.llama.gpu, gpuLayers: model.gpuLayers, totalLayers: model.fileInsights.totalLayers };
    const api = createApi(sessions, replica, identity, verify, runtime, opts, log);
    const server = httpServer(api, opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS);
    const address = await listen(server, host, opts.port ?? DEFAULT_PORT);
    if (!verify && !isLoopbackHost(address.address)) {
      // `host` was a name that resolved to a non-loopback address: never serve that without a token
      await closeServer(server);
      throw new Error(`Refusing to run without a token: ${host} resolved to ${address.address}, which is not a loopback address`);
    }
    server.on("error", (err) => log(`tandem cloud: server error: ${err.message}`));
    const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
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
      runtime,
      replica: replica?.identity,
      stats: () => api.stats(),
      memory: () => manager.memory(),
      close: () =>
        (closing ??= (async () => {
          await closeServer(server);
          await manager.dispose();
          await replica?.dispose();
          if (ownsModel) await model.dispose();
        })()),
    };
  } catch (err) {
    await sessions?.dispose();
    await replica?.dispose();
    if (ownsModel) await model.dispose();
    throw err;
  }
}

function createApi(
  sessions: SessionManager,
  replica: SlmReplica | undefined,
  identity: ModelIdentity,
  verify: BearerVerifier | undefined,
  runtime: RuntimeInfo,
  opts: CloudServerOptions,
  log: (message: string) => void,
): Api {
  const limiter = opts.rateLimit === false ? undefined : new TokenBucketLimiter(opts.rateLimit ?? DEFAULT_RATE_LIMIT);
  return new Api(sessions, replica, identity, verify, limiter, log, runtime, Date.now(), {
    maxConnections: positiveLimit(opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS, "maxConnections"),
    maxPerAddress: positiveLimit(opts.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, "maxConnectionsPerAddress"),
  });
}

/** The model to serve: the one given (not ours to dispose), or loaded from `modelPath`. */
async function serverModel(opts: CloudServerOptions): Promise<{ model: LlamaModel; ownsModel: boolean; threads: number | undefined }> {
  if (opts.model) return { model: opts.model, ownsModel: false, threads: opts.threads };
  if (!opts.modelPath) throw new Error("startCloudServer needs a model: pass modelPath or model");
  const file = await resolveModelSource(opts.modelPath);
  const loaded = await loadModelFile(await runtimeFor(opts.gpu), file);
  return { model: loaded.model, ownsModel: true, threads: opts.threads ?? loaded.threads };
}

function createSessions(
  model: LlamaModel,
  vocabSize: number,
  threads: number | undefined,
  opts: CloudServerOptions,
): Promise<SessionManager> {
  return SessionManager.create({
    model,
    vocabSize,
    maxSessions: opts.maxSessions,
    maxKvBytes: opts.maxKvMb === undefined ? undefined : Math.floor(opts.maxKvMb * MIB),
    maxQueuedPerSession: opts.maxQueuedPerSession,
    maxQueued: opts.maxQueued,
    contextSize: opts.contextSize,
    threads,
    idleTimeoutMs: opts.idleTimeoutMs,
    maxSessionsPerOwner: opts.maxSessionsPerClient,
  });
}

/** The device's SLM beside the LLM (`replicaModelPath`), which must share its vocabulary; undefined without one. */
async function loadReplica(
  model: LlamaModel,
  identity: ModelIdentity,
  contextSize: number,
  opts: CloudServerOptions,
): Promise<SlmReplica | undefined> {
  if (!opts.replicaModelPath) return undefined;
  const replica = await SlmReplica.load(model.llama, await resolveModelSource(opts.replicaModelPath), {
    slots: opts.replicaSlots,
    contextSize,
  });
  if (replica.identity.vocabHash !== identity.vocabHash) {
    await replica.dispose();
    throw new VocabularyMismatchError(replica.identity, identity);
  }
  return replica;
}

/** The HTTP server over `api`, with timeouts and answers to what never reaches its handler. */
function httpServer(api: Api, headersTimeout: number): http.Server {
  const server = http.createServer(
    {
      // Node checks the header and request timeouts on this interval (default 30 s, which let
      // unfinished sockets live a minute): check often enough for a short header timeout to bite
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4))),
      // since Node 18 the header timer runs from a request's first byte (or the connection's start),
      // not across keep-alive idle time, so it can be far shorter than keepAliveTimeout
      headersTimeout,
      requestTimeout: Math.max(headersTimeout, 30_000),
    },
    (req, res) => void api.handle(req, res),
  );
  // clients hold connections open between tokens; Node's 5 s default would make them reconnect often
  server.keepAliveTimeout = 65_000;
  // each connection costs a socket and, while a body is read, up to maxBodyBytes: bound them
  server.on("connection", (socket: Socket) => api.connections.admit(socket));
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(api, err, socket));
  // CONNECT (proxy tunnels) bypasses the request handler, and without a listener Node just drops the
  // connection (found by the fuzz test): answer it like any other method this server does not take
  server.on("connect", (_req: IncomingMessage, socket: Socket) => {
    const body = JSON.stringify(new CloudError("bad_request", "CONNECT is not supported: this is not a proxy").toBody());
    socket.end(
      `HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST, DELETE\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}

/**
 * Malformed HTTP never reaches the handler. Answer like Node's own handler would (431 for oversized
 * headers, 408 for a request that took too long, 400 otherwise), but only when no response of ours is
 * under way on that socket: a status line in the middle of one would corrupt it.
 */
function answerClientError(api: Api, err: NodeJS.ErrnoException, socket: Socket): void {
  if (!socket.writable || api.busySockets.has(socket) || err.code === "ECONNRESET") return void socket.destroy();
  const status =
    err.code === "HPE_HEADER_OVERFLOW"
      ? "431 Request Header Fields Too Large"
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? "408 Request Timeout"
        : "400 Bad Request";
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  // a client that never reads (a flood of unfinished requests) would hold the half-closed socket
  // open: give a real one a moment to read the answer, then free it
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
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

/**
 * The llama.cpp runtime to load the model with. Without an explicit choice, the process's shared one
 * (the demo and the app run the server in-process next to the device model). With one, a runtime of
 * that backend; `build: "never"` keeps it to the prebuilt binaries in node_modules (CUDA and Vulkan
 * for Linux x64 are among them), so a machine without that GPU fails fast or, for "auto", falls back
 * to the CPU in about a second.
 */
async function runtimeFor(gpu: CloudServerOptions["gpu"]): Promise<Llama> {
  if (gpu === undefined) return getTandemLlama();
  try {
    return await getLlama({ gpu, build: "never", logLevel: "error" as never, progressLogs: false }); // the enum hides its string values (as in inference/llama.ts)
  } catch (err) {
    const reason = errorMessage(err) || (err as Error).name;
    throw new Error(
      gpu === false
        ? `Cannot start llama.cpp on the CPU: ${reason}`
        : `Cannot start llama.cpp with --gpu ${gpu}: ${reason} (no prebuilt ${gpu === "auto" ? "" : `${gpu} `}build of llama.cpp loads on this machine: is the GPU driver installed? --gpu auto falls back to the CPU)`,
      { cause: err },
    );
  }
}

/** Routes, authentication, rate limiting and error mapping around the session manager. */
class Api {
  requests = 0;
  readonly errors: Record<string, number> = {};
  readonly statuses: Record<string, number> = {};
  /** sockets with a request of ours in progress (see the clientError handler) */
  readonly busySockets = new WeakSet<Socket>();
  readonly connections: ConnectionGuard;

  constructor(
    private readonly sessions: SessionManager,
    private readonly replica: SlmReplica | undefined,
    private readonly identity: ModelIdentity,
    private readonly verify: BearerVerifier | undefined,
    private readonly limiter: TokenBucketLimiter | undefined,
    private readonly log: (message: string) => void,
    private readonly runtime: RuntimeInfo,
    private readonly startedAt: number,
    limits: ConnectionLimits,
  ) {
    this.connections = new ConnectionGuard(limits, (socket) => this.busySockets.has(socket));
  }

  stats(): CloudServerStats {
    return {
      ...this.sessions.stats(),
      httpRequests: this.requests,
      errors: { ...this.errors },
      statuses: { ...this.statuses },
      uptimeMs: Date.now() - this.startedAt,
      connections: this.connections.stats(),
    };
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.requests++;
    const socket = req.socket;
    this.busySockets.add(socket);
    res.once("close", () => {
      this.busySockets.delete(socket);
      const status = res.headersSent ? String(res.statusCode) : "none"; // "none": the connection went before an answer
      this.statuses[status] = (this.statuses[status] ?? 0) + 1;
    });
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
    if (path === "/health") return this.health(req, res);
    const client = this.admit(req);
    if (path === "/v1/sessions") return this.createSession(req, res, client);
    const m = /^\/v1\/sessions\/([^/]+)(?:\/(next|append|truncate|route|router|forget))?$/.exec(path);
    if (!m) throw new CloudError("not_found", `No such endpoint: ${path.length > 100 ? `${path.slice(0, 100)}…` : path}`); // not echoed at length
    const [, id, action] = m;
    allowMethods(req, action ? "POST" : "DELETE");
    const body = await readBody(req, PROTOCOL_LIMITS.maxBodyBytes);
    // ids are UUIDs; anything else cannot name a session (and is not echoed back at length)
    if (!SESSION_ID.test(id)) throw new CloudError("session_not_found", "No such session");
    return this.sessionAction(res, id, action as SessionAction | undefined, body, client);
  }

  private health(req: IncomingMessage, res: ServerResponse): void {
    allowMethods(req, "GET");
    const health: CloudHealthResponse = {
      ok: true,
      protocol: PROTOCOL_VERSION,
      model: this.identity,
      sessions: this.sessions.size,
      maxSessions: this.sessions.maxSessions,
      contextSize: this.sessions.capacity,
    };
    // /health stays open to anyone (load balancers, the client's vocabulary check); the detail only
    // for the token's holders. On an open (loopback, --no-auth) server everyone is a holder.
    const authorized = this.verify
      ? req.headers.authorization !== undefined && this.verify(req.headers.authorization)
      : !browserRefusal(req);
    if (authorized) health.detail = this.detail();
    return sendJson(res, 200, health);
  }

  private async createSession(req: IncomingMessage, res: ServerResponse, client: string): Promise<void> {
    allowMethods(req, "POST");
    const request = parseCreateSession(parseJson(await readBody(req, PROTOCOL_LIMITS.maxBodyBytes)));
    const { client: device } = request;
    // the hash covers the tokenizer's real entries; the sizes may differ by padding rows (Qwen2.5
    // 0.5B vs 32B) and each side range-checks IDs against its own size
    if (device.vocabHash !== this.identity.vocabHash) {
      throw new CloudError("vocab_mismatch", new VocabularyMismatchError(device, this.identity).message);
    }
    const { sessionId } = await this.sessions.open(client);
    const body: CreateSessionResponse = {
      sessionId,
      model: this.identity,
      contextSize: this.sessions.capacity,
      ...(this.replica ? { replica: this.replica.info } : {}),
    };
    return sendJson(res, 200, body);
  }

  /** A request about session `id`: DELETE (no action) or one of the POST actions. */
  private async sessionAction(
    res: ServerResponse,
    id: string,
    action: SessionAction | undefined,
    body: Buffer,
    client: string,
  ): Promise<void> {
    const vocab = this.identity.vocabSize;
    switch (action) {
      case undefined:
        await this.sessions.delete(id);
        return sendJson(res, 200, { ok: true });
      case "next": {
        const r = parseNext(parseJson(body), vocab);
        return sendJson(res, 200, await this.sessions.next(id, r.base, r.tokens, r.topK, r.draft, r.prefix, r.logprob, r.sampling));
      }
      case "append": {
        const r = parseAppend(parseJson(body), vocab);
        return sendJson(res, 200, await this.sessions.append(id, r.base, r.tokens, r.prefix));
      }
      case "truncate": {
        const r = parseTruncate(parseJson(body));
        return sendJson(res, 200, await this.sessions.truncate(id, r.length));
      }
      case "router": {
        const replica = this.requireReplica();
        this.sessions.touch(id); // the session must exist: routers are uploaded for one
        const json = parseJson(body);
        checkRouterUpload(json, replica);
        const response: RouterUploadResponse = { digest: replica.upload(client, body, json) };
        return sendJson(res, 200, response);
      }
      case "forget": {
        parseForget(parseJson(body));
        const response: ForgetResponse = { forgotten: true, ...(await this.sessions.forget(id)) };
        return sendJson(res, 200, response);
      }
      case "route":
        return this.routeStream(res, id, client, parseRoute(parseJson(body), vocab));
    }
  }

  private requireReplica(): SlmReplica {
    if (!this.replica) throw new CloudError("no_replica", "This server runs no replica of the device's SLM (start it with --slm)");
    return this.replica;
  }

  /**
   * /route: NDJSON lines as the positions are decided. Errors before the first line are ordinary JSON
   * errors (out_of_sync, context_overflow, ...); after it, a last `{ error }` line.
   */
  private async routeStream(res: ServerResponse, id: string, client: string, r: RouteRequest): Promise<void> {
    const replica = this.requireReplica();
    const router = replica.router(client, r.router);
    const left = new AbortController();
    res.once("close", () => left.abort());
    const emit = (line: RouteLine) => {
      if (!res.headersSent) res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
      if (!res.destroyed) res.write(JSON.stringify(line) + "\n");
    };
    try {
      const done = await this.sessions.route(
        id,
        r,
        (session, history) => replica.follow(session, history, router, r.tau, r.sampling),
        emit,
        left.signal,
      );
      emit({ end: done.end, length: done.length });
      res.end();
    } catch (err) {
      if (!res.headersSent) throw err;
      emit(this.classify(res.req, err).toBody());
      res.end();
    }
  }

  private detail(): HealthDetail {
    const mem = process.memoryUsage();
    return {
      runtime: this.runtime,
      memory: {
        ...this.sessions.memory(),
        process: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, externalBytes: mem.external },
      },
      queue: this.sessions.queue(),
      sessions: this.sessions.usage(),
      stats: this.stats(),
    };
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
    const refusal = this.verify ? undefined : browserRefusal(req);
    if (refusal) throw refusal;
    this.connections.trust(req.socket);
    return client;
  }

  /** The failure as clients see it, counted; anything but a CloudError is logged and becomes a generic 500. */
  private classify(req: IncomingMessage, err: unknown): CloudError {
    let error: CloudError;
    if (err instanceof CloudError) {
      error = err;
    } else {
      this.log(`tandem cloud: ${req.method} ${pathOf(req.url)} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      error = new CloudError("internal", "Internal server error");
    }
    this.errors[error.code] = (this.errors[error.code] ?? 0) + 1;
    return error;
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const error = this.classify(req, err);
    if (res.headersSent) {
      res.destroy(); // cannot send an error after a response has started: make the failure visible
      return;
    }
    const headers: Record<string, string> = {};
    // reading stopped somewhere in an oversized body (see readBody): the connection cannot carry another request
    if (error.code === "payload_too_large") headers.connection = "close";
    if (error.retryAfterMs !== undefined) headers["retry-after"] = String(Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
    if (err instanceof MethodNotAllowed) headers.allow = err.allow;
    sendJson(res, error.status, error.toBody(), headers);
  }
}

class RateLimited extends CloudError {
  constructor(waitMs: number) {
    super("rate_limited", `Too many requests; retry in ${waitMs} ms`, { retryAfterMs: waitMs });
  }
}

/** 405 carries the protocol's bad_request code: the protocol has no code of its own for it. */
class MethodNotAllowed extends CloudError {
  constructor(
    method: string | undefined,
    readonly allow: string,
  ) {
    super("bad_request", `Method ${method ?? "?"} not allowed here; use ${allow}`, { status: 405 });
  }
}

/**
 * An open (--no-auth, loopback) server is reachable by every web page the user opens: a page's
 * no-cors fetch can POST to 127.0.0.1 with a text/plain body, and a DNS-rebound name can make it
 * same-origin. So it refuses what only a browser sends: an Origin header, a Host that is not a
 * loopback name, a POST whose body is not declared JSON. The device's client sends none of these.
 */
function browserRefusal(req: IncomingMessage): CloudError | undefined {
  if (req.headers.origin !== undefined) {
    return new CloudError("unauthorized", "Requests from web pages (with an Origin header) are refused by a server without a token", {
      status: 403,
    });
  }
  const host = (req.headers.host ?? "").replace(/:\d+$/, "");
  if (!isLoopbackHost(host))
    return new CloudError("unauthorized", "A server without a token answers only requests addressed to a loopback host", { status: 403 });
  const type = req.headers["content-type"] ?? "";
  if (req.method === "POST" && !/^application\/json\s*(;|$)/i.test(type)) {
    return new CloudError("bad_request", "Request bodies must be sent as Content-Type: application/json", { status: 415 });
  }
  return undefined;
}

function positiveLimit(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
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
    // a deep accept queue: with Node's 511, a flood of connections fills it and the kernel drops a real
    // client's SYN, which it then resends only after 1 s, 3 s, ... (measured: 1.9-4.2 s to get in
    // behind 1,100 unfinished sockets); the kernel caps it at net.core.somaxconn
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
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
