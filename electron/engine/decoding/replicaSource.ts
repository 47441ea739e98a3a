/**
 * The token at a routed position from the cloud's replica of the device's routed decoding
 * (RouteRequest in shared/protocol.ts): one round trip for a stretch of routed positions.
 *
 * At a routed position with no stream running, a stream is opened: its first entry is the LLM's
 * token there (one round trip, as a call), and the server goes on deciding position after position
 * with its copy of the SLM and the router (the same decision: shared/routing.ts), sending the LLM's
 * token wherever that router routes. The device keeps decoding on its own. At each of its routed
 * positions it takes the stream's entry for that position if (a) every entry before it equals the
 * token the device committed there — the LLM's token was then predicted after exactly the device's
 * history, which is what a call would have returned — and (b) the replica routed it too (else the
 * entry is the SLM's token, and the LLM's is unknown). Otherwise the stream is dropped and a new one
 * opened at that position. So the tokens are the reference decoder's; only the waiting differs: the
 * server runs ahead of the device by about half a round trip, and a routed position after the first
 * costs one LLM step, not a round trip. A cloud that cannot follow is asked per call (`calls`).
 */
import type { Router } from "../../../shared/router.js";
import { fallbackReason, sentNothing, type CloudCallError, type CloudPeer } from "../cloud/peer.js";
import type { RouteStream, RouteWait } from "../cloud/routeStream.js";
import { callCloud, type CallSource } from "./callSource.js";
import { Pending, type RoutedAt, type RoutedResult, type TokenSource } from "./routed.js";

/** A stream's answer, or that this cloud has no usable replica (for this router): then a call answers. */
type StreamAnswer = RoutedResult | { kind: "unavailable" };

export class ReplicaSource implements TokenSource {
  private stream: RouteStream | null = null;
  /** committed length at the stream's first position */
  private start = 0;
  /** entries verified against the committed tokens so far */
  private checked = 0;
  private tau = Number.NaN;
  /** this cloud cannot follow (no replica, or not for this router): the rest of the answer asks per call */
  private unavailable = false;

  constructor(
    private readonly cloud: CloudPeer,
    private readonly router: Router,
    private readonly calls: CallSource,
  ) {
    cloud.prepareRoute?.(router);
  }

  ask(at: RoutedAt): Pending {
    const ready = this.arrived(at.history);
    const followed = this.unavailable ? null : this.follow(at);
    if (!followed) return this.calls.ask(at);
    // a stream answers later positions itself: no pipelined calls beside it
    const result = followed.then((a) => (a.kind === "unavailable" ? callCloud(this.cloud, at.history, at.signal, 0, at.sampling) : a));
    return new Pending(result, ready, false);
  }

  committed(history: readonly number[]): void {
    this.check(history);
    this.calls.committed(history);
  }

  /**
   * Verifies the entries that have arrived against what the device committed, and drops the stream
   * at the first difference (so its connection and the server's work stop at once).
   */
  private check(history: readonly number[]): void {
    const s = this.stream;
    if (!s) return;
    const upTo = Math.min(s.entries.length, history.length - this.start);
    for (; this.checked < upTo; this.checked++) {
      if (s.entries[this.checked]!.tokenId !== history[this.start + this.checked]) return this.drop();
    }
    if (s.ended && s.entries.length <= history.length - this.start) this.drop(); // nothing left for later positions
  }

  /** Ends the answer: the stream's connection closes and the server stops. */
  close(): void {
    this.drop();
  }

  /** The running stream's entry for this position, or a new stream's; null when this cloud cannot follow. */
  private follow(at: RoutedAt): Promise<StreamAnswer> | null {
    const t0 = performance.now();
    this.check(at.history);
    if (this.stream && at.tau !== this.tau) this.drop(); // the replica decides with the τ it was given (an answer's sampling is fixed)
    const stream = this.stream;
    if (!stream) return this.open(at, t0);
    return stream.at(at.history.length - this.start, at.signal).then((w): Promise<StreamAnswer> | StreamAnswer => {
      if (w.kind === "aborted") return { kind: "aborted" };
      if (w.kind === "timeout") {
        this.drop(w.error);
        return { kind: "fallback", reason: w.error.message, latencyMs: performance.now() - t0 };
      }
      if (w.kind === "entry") {
        this.check(at.history); // every entry before this position has arrived now
        if (this.stream === stream && w.entry.routed) return cloudEntry(w.entry.tokenId, t0);
      }
      // the stream ended before this position, left the device's tokens, or the replica kept its SLM's token here
      if (this.stream === stream) this.drop();
      return this.open(at, t0) ?? { kind: "unavailable" };
    });
  }

  private open(at: RoutedAt, t0: number): Promise<StreamAnswer> | null {
    const stream =
      this.cloud.route?.(
        at.history,
        { tau: at.tau, router: this.router, position: at.position, max: at.room + 1, sampling: at.sampling },
        at.signal,
      ) ?? null;
    if (!stream) {
      this.unavailable = true;
      return null;
    }
    this.drop();
    this.stream = stream;
    this.start = at.history.length;
    this.checked = 0;
    this.tau = at.tau;
    return stream.at(0, at.signal).then((w) => this.first(stream, w, t0));
  }

  /** The answer of a new stream's first entry. */
  private first(stream: RouteStream, w: RouteWait, t0: number): StreamAnswer {
    if (w.kind === "aborted") return { kind: "aborted" };
    if (w.kind === "entry") return cloudEntry(w.entry.tokenId, t0);
    if (this.stream === stream) this.drop(w.kind === "timeout" ? w.error : null);
    if (!w.error) return { kind: "unavailable" }; // ended without a position: cannot happen with a well-behaved server
    return { kind: "fallback", reason: fallbackReason(w.error), latencyMs: sentNothing(w.error) ? null : performance.now() - t0 };
  }

  /** Whether the running stream's entry for the position after `history` has arrived already (nothing to wait for). */
  private arrived(history: readonly number[]): boolean {
    return this.stream !== null && this.stream.entries.length > history.length - this.start;
  }

  private drop(reason: CloudCallError | null = null): void {
    this.stream?.cancel(reason);
    this.stream = null;
  }
}

/** A stream carries token IDs only: a log-probability would cost the server a sort of the vocabulary. */
function cloudEntry(tokenId: number, t0: number): RoutedResult {
  return { kind: "cloud", tokenId, latencyMs: performance.now() - t0, verdict: { tokenId, top: [] }, continuation: [] };
}
