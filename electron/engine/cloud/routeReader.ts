/**
 * The client's end of /route (RouteRequest in shared/protocol.ts): when the server runs a replica of
 * the device's SLM, one request answers every routed position of a stretch of the answer. The reader
 * sends it (re-syncing as a call does), uploads the device's router network to the session when the
 * replica needs it, and fills a RouteStream from the NDJSON lines as they arrive.
 */
import {
  PROTOCOL_LIMITS,
  routeLineSchema,
  RouterUploadResponseSchema,
  type ReplicaRouter,
  type RouteRequestBody,
} from "../../../shared/protocol.js";
import type { Router } from "../../../shared/router.js";
import { compactSampling } from "../../../shared/sampling.js";
import { CloudCallError, type RouteOptions } from "./peer.js";
import { RouteStream } from "./routeStream.js";
import { parseReply, type CloudHealth } from "./callSupport.js";
import { ServerError, expectLength, type CloudHttp } from "./cloudHttp.js";
import type { SessionMirror, TandemStats } from "./sessionMirror.js";
import type { BackgroundSync } from "./backgroundSync.js";
import { ndjsonLines } from "./ndjson.js";

export interface RouteReaderParts {
  mirror: SessionMirror;
  http: CloudHttp;
  health: CloudHealth;
  sync: BackgroundSync;
  stats: TandemStats;
  deadlineMs: number;
  /** classifies a failure, updates the back-off, and returns the error to throw (the client's own) */
  fail(err: unknown, deadline: AbortSignal, userSignal?: AbortSignal): Error;
}

/** A stream's wait for each position has its own deadline (RouteStream.at): the request itself has none. */
const NOT_A_DEADLINE = new AbortController().signal;

export class RouteReader {
  /** router networks uploaded (or on their way) to the current session, by router */
  private uploaded = new WeakMap<Router, Promise<string>>();

  constructor(private readonly p: RouteReaderParts) {}

  /** A new session (or none) holds no router network. */
  forgetUploads(): void {
    this.uploaded = new WeakMap();
  }

  /** Whether the session's replica runs `router`. */
  runs(router: Router): boolean {
    const kind = router.replica?.kind;
    return kind !== undefined && this.p.mirror.replica?.routers.includes(kind) === true;
  }

  /** Opens the stream from the position after `history` (CloudPeer.route; the client checked it may). */
  open(history: readonly number[], opts: RouteOptions, signal?: AbortSignal): RouteStream {
    const { mirror } = this.p;
    const stream = new RouteStream(this.p.deadlineMs, mirror.catchUpMs(history));
    const snapshot = history.slice();
    // a stream leaves tokens beyond its history (like a continuation); while it runs the sync waits
    mirror.callsInFlight.set(snapshot, { draft: true });
    this.p.stats.calls++;
    const requestSignal = signal ? AbortSignal.any([signal, stream.signal]) : stream.signal;
    void this.read(snapshot, opts, stream, requestSignal).finally(() => mirror.callsInFlight.delete(snapshot));
    return stream;
  }

  /**
   * Uploads `router`'s network to the session's replica in the background, if it needs one, so the
   * answer's first stream does not wait a round trip for it. Never throws: a failed upload is retried
   * by the stream that needs it.
   */
  prepare(router: Router): void {
    const m = this.p.mirror;
    if (m.closed || !m.sessionId || router.replica?.kind !== "mlp" || !m.replica?.routers.includes("mlp")) return;
    if (!this.uploaded.has(router)) this.upload(router, AbortSignal.timeout(Math.max(this.p.deadlineMs, 5000))).catch(() => {});
  }

  /** Sends the /route request (re-syncing as a call does) and fills `stream` from its lines. */
  private async read(history: readonly number[], opts: RouteOptions, stream: RouteStream, signal: AbortSignal): Promise<void> {
    const { mirror, health, stats } = this.p;
    let failure: CloudCallError | null = null;
    try {
      await mirror.ensureSession(signal);
      for (let attempt = 0; ; attempt++) {
        const session = mirror.sessionId;
        try {
          await this.send(history, opts, stream, signal, attempt === 0);
          health.online();
          this.p.sync.resume();
          return;
        } catch (err) {
          // a stream that has begun cannot be re-sent: the decoder has its first positions already
          if (stream.entries.length > 0 || attempt >= 3) throw err;
          if (err instanceof ServerError && err.body?.code === "no_replica" && opts.router.replica?.kind === "mlp") {
            this.uploaded.delete(opts.router); // the server dropped the network (or restarted): upload it again
          } else if (!(await mirror.resync(err, signal, session))) throw err;
        }
      }
    } catch (err) {
      if (stream.signal.aborted) {
        // cancelled by the decoder: it has what it needs, unless it gave up waiting (a failure, for the back-off)
        if (stream.cancelReason) {
          stats.failures++;
          health.failed(stream.cancelReason);
        }
        return;
      }
      stats.failures++;
      const e = this.p.fail(err, NOT_A_DEADLINE, signal);
      failure = e instanceof CloudCallError ? e : new CloudCallError("malformed", e.message);
    } finally {
      stream.end(failure);
    }
  }

  private async send(
    history: readonly number[],
    opts: RouteOptions,
    stream: RouteStream,
    signal: AbortSignal,
    optimistic: boolean,
  ): Promise<void> {
    const { mirror } = this.p;
    const router = await this.replicaRouter(opts.router, signal);
    const base = await mirror.deltaBase(history, signal, optimistic);
    const body: RouteRequestBody = {
      ...mirror.delta(history, base, history.slice(base)),
      tau: opts.tau,
      router,
      ...(opts.sampling ? { sampling: compactSampling(opts.sampling) } : {}),
      position: opts.position,
      max: Math.max(1, Math.min(PROTOCOL_LIMITS.maxRoute, Math.floor(opts.max))),
    };
    const epoch = mirror.sending(base, true);
    const res = await this.p.http.stream(mirror.path("route"), body, signal);
    const lineSchema = routeLineSchema(mirror.device!.vocabSize);
    // the tokens the server holds once the LLM has predicted a position: the history and the stream's tokens before it
    const held = (k: number) => [...history, ...stream.entries.slice(0, k).map((e) => e.tokenId)];
    for await (const line of ndjsonLines(res, this.p.stats)) {
      const l = parseReply(lineSchema, line, "route line");
      if ("tokenId" in l) {
        if (stream.entries.length === 0 && !l.routed)
          throw new CloudCallError("malformed", "a route stream must begin with the LLM's token");
        if (stream.entries.length >= body.max)
          throw new CloudCallError("malformed", `the cloud sent more than the ${body.max} positions asked for`);
        if (l.routed) mirror.confirm(epoch, held(stream.entries.length));
        stream.push({ tokenId: l.tokenId, routed: l.routed });
      } else if ("end" in l) {
        let lastRouted = 0;
        stream.entries.forEach((e, i) => e.routed && (lastRouted = i));
        expectLength(l.length, history.length + lastRouted);
        if (stream.entries.length === 0) throw new CloudCallError("malformed", "the route stream ended before its first position");
        return;
      } else throw new CloudCallError("http", `cloud error during the route stream: ${l.error.code}: ${l.error.message}`);
    }
    throw new CloudCallError("malformed", "the route stream ended without its last line");
  }

  /** How the replica is to run `router`: uploading its network to this session first when needed. */
  private async replicaRouter(router: Router, signal: AbortSignal): Promise<ReplicaRouter> {
    if (router.replica!.kind === "confidence") return { kind: "confidence" };
    return { kind: "mlp", digest: await (this.uploaded.get(router) ?? this.upload(router, signal)) };
  }

  private upload(router: Router, signal: AbortSignal): Promise<string> {
    const r = router.replica as { kind: "mlp"; network(): unknown };
    const uploads = this.uploaded;
    const path = this.p.mirror.path("router");
    // async: a network that cannot be read rejects the upload, as a failed request does
    const done = (async () =>
      (await this.p.http.call(path, r.network(), signal, RouterUploadResponseSchema, "router upload reply")).digest)();
    uploads.set(router, done);
    done.catch(() => uploads.delete(router)); // the next stream tries again
    return done;
  }
}
