/**
 * Following a cloud's replica of the device's routed decoding (RouteRequest in shared/protocol.ts).
 *
 * At a routed position with no stream running, the decoder opens one: its first entry is the LLM's
 * token there (one round trip, as a call), and the server goes on deciding position after position
 * with its copy of the SLM and the router, sending the LLM's token wherever that router routes. The
 * device keeps decoding on its own. At each of its routed positions it takes the stream's entry for
 * that position if (a) every entry before it equals the token the device committed there — the
 * LLM's token was then predicted after exactly the device's history, which is what a call would
 * have returned — and (b) the replica routed it too (else the entry is the SLM's token, and the
 * LLM's is unknown). Otherwise the stream is dropped and a new one opened at that position. So the
 * tokens are the blocking decoder's; only the waiting differs: the server runs ahead of the device
 * by about half a round trip, and a routed position after the first costs one LLM step, not a round
 * trip.
 */
import type { Router } from "../../shared/router.js";
import type { CloudCallError, CloudPeer } from "./cloud/peer.js";
import type { RouteStream } from "./cloud/routeStream.js";

export type ReplicaAnswer =
  | { kind: "cloud"; tokenId: number; latencyMs: number }
  | { kind: "failed"; error: CloudCallError; latencyMs: number | null }
  | { kind: "aborted" }
  /** this cloud has no usable replica (or not for this router): ask per call */
  | { kind: "unavailable" };

export class ReplicaFollower {
  private stream: RouteStream | null = null;
  /** history length at the stream's first position */
  private start = 0;
  /** entries verified against the committed history so far */
  private checked = 0;
  private tau = Number.NaN;
  /** this cloud cannot follow (no replica, or not for this router): the rest of the answer asks per call */
  private unavailable = false;

  constructor(
    private readonly cloud: CloudPeer,
    private readonly router: Router,
  ) {}

  /**
   * After every commit: verifies the entries that have arrived against what the device committed, and
   * drops the stream at the first difference (so its connection and the server's work stop at once).
   */
  check(history: readonly number[]): void {
    const s = this.stream;
    if (!s) return;
    const upTo = Math.min(s.entries.length, history.length - this.start);
    for (; this.checked < upTo; this.checked++) {
      if (s.entries[this.checked]!.tokenId !== history[this.start + this.checked]) return this.drop();
    }
    if (s.ended && s.entries.length <= history.length - this.start) this.drop(); // nothing left for later positions
  }

  /**
   * The cloud's token at the routed position after `history` (answer position `position`), from the
   * running stream or a new one (`max` bounds how many positions a new one may cover); null at once
   * when this cloud cannot follow (the decoder then makes a call), and from then on for this answer.
   */
  ask(history: readonly number[], position: number, tau: number, max: number, signal: AbortSignal | undefined): Promise<ReplicaAnswer> | null {
    if (this.unavailable) return null;
    const t0 = performance.now();
    this.check(history);
    if (this.stream && tau !== this.tau) this.drop(); // the replica decides with the τ it was given
    const stream = this.stream;
    if (!stream) return this.open(history, position, tau, max, signal, t0);
    const offset = history.length - this.start;
    return stream.at(offset, signal).then((w): Promise<ReplicaAnswer> | ReplicaAnswer => {
      if ("aborted" in w) return { kind: "aborted" };
      if ("timeout" in w) {
        this.drop(w.timeout);
        return { kind: "failed", error: w.timeout, latencyMs: performance.now() - t0 };
      }
      if ("entry" in w) {
        this.check(history); // every entry before this position has arrived now
        if (this.stream === stream && w.entry.routed) {
          return { kind: "cloud", tokenId: w.entry.tokenId, latencyMs: performance.now() - t0 };
        }
      }
      // the stream ended before this position, left the device's tokens, or the replica kept its SLM's token here
      if (this.stream === stream) this.drop();
      return this.open(history, position, tau, max, signal, t0) ?? { kind: "unavailable" };
    });
  }

  private open(history: readonly number[], position: number, tau: number, max: number, signal: AbortSignal | undefined, t0: number): Promise<ReplicaAnswer> | null {
    const stream = this.cloud.route?.(history, { tau, router: this.router, position, max }, signal) ?? null;
    if (!stream) {
      this.unavailable = true;
      return null;
    }
    this.drop();
    this.stream = stream;
    this.start = history.length;
    this.checked = 0;
    this.tau = tau;
    return stream.at(0, signal).then((w): ReplicaAnswer => {
      if ("aborted" in w) return { kind: "aborted" };
      if ("entry" in w) {
        return { kind: "cloud", tokenId: w.entry.tokenId, latencyMs: performance.now() - t0 };
      }
      const error = "timeout" in w ? w.timeout : w.ended;
      if (this.stream === stream) this.drop("timeout" in w ? w.timeout : null);
      if (!error) return { kind: "unavailable" }; // ended without a position: cannot happen with a well-behaved server
      return { kind: "failed", error, latencyMs: error.reason === "offline" ? null : performance.now() - t0 };
    });
  }

  /** Whether the running stream's entry for the position after `history` has arrived already (nothing to wait for). */
  arrived(history: readonly number[]): boolean {
    return this.stream !== null && this.stream.entries.length > history.length - this.start;
  }

  /** Ends the answer: the stream's connection closes and the server stops. */
  close(): void {
    this.drop();
  }

  private drop(reason: CloudCallError | null = null): void {
    this.stream?.cancel(reason);
    this.stream = null;
  }
}
