/**
 * A cloud peer behind the user's limits: a decorator of any CloudPeer that the decoder uses as it is.
 *
 *   local-only   nothing goes out: no call, no background sync, no route stream — every routed
 *                position keeps the SLM's token, origin `fallback`, reason "local-only"
 *   budget       cloud tokens are reserved before a call (its token and the continuation asked for,
 *                trimmed to what is left) and charged by what came back, so use stops exactly at the
 *                cap; past it (or past the bytes-up cap) routed positions fall back, reason "budget"
 *
 * Route streams (the server's SLM replica) are used only where no token cap applies: a stream's
 * positions cannot be reserved one by one. The LLM tokens the answer took from them (routed entries
 * that are the answer's committed tokens) are charged when the answer ends (`chargeStreams`).
 */
import type { ModelIdentity } from "../../../shared/protocol.js";
import type { Router } from "../../../shared/router.js";
import { CloudLearning } from "../cloudPolicy.js";
import {
  CloudCallError,
  type CloudPeer,
  type CloudState,
  type CloudStats,
  type CloudStep,
  type NextOptions,
  type RouteOptions,
} from "../cloud/peer.js";
import type { RouteStream } from "../cloud/routeStream.js";

/** What the limits say about the next call. */
export interface CloudGate {
  /** nothing of this conversation may leave the device */
  readonly localOnly: boolean;
  /** cloud tokens that may still be used (Infinity: no cap) */
  tokensLeft(): number;
  /** whether the bytes-up cap is reached (given the peer's byte counter) */
  bytesExhausted(stats: Readonly<CloudStats>): boolean;
  /** the cloud wrote `tokens` tokens for a call */
  charge(tokens: number): void;
  /** what a refusal says, naming the limit and how to raise it (`reserved`: tokens of calls still in flight) */
  budgetMessage(reserved: number): string;
}

export const LOCAL_ONLY_MESSAGE = "this conversation never leaves the device";

export class GuardedPeer implements CloudPeer {
  /** tokens reserved by calls in flight */
  private reserved = 0;
  /** the route streams handed out, not yet charged, with the answer position each began at */
  private streams: { start: number; stream: RouteStream }[] = [];
  /** the answer's committed tokens, as last observed */
  private committed: readonly number[] = [];

  constructor(
    private readonly inner: CloudPeer,
    private readonly gate: CloudGate,
  ) {}

  get kind(): string {
    return this.inner.kind;
  }
  get stats(): Readonly<CloudStats> {
    return this.inner.stats;
  }
  get state(): CloudState {
    return this.inner.state;
  }
  get learnt(): CloudLearning {
    return this.inner.learnt;
  }

  connect(device: ModelIdentity, signal?: AbortSignal): Promise<ModelIdentity> {
    if (this.gate.localOnly) return Promise.reject(new CloudCallError("local_only", LOCAL_ONLY_MESSAGE));
    return this.inner.connect(device, signal);
  }

  async next(history: readonly number[], signal?: AbortSignal, opts: NextOptions = {}): Promise<CloudStep> {
    const refused = this.blocked();
    if (refused) throw refused;
    const left = this.gate.tokensLeft() - this.reserved;
    const draft = Math.max(0, Math.min(opts.draft ?? 0, left - 1));
    const reserve = 1 + draft;
    this.reserved += reserve;
    try {
      const step = await this.inner.next(history, signal, draft > 0 ? { ...opts, draft } : { ...opts, draft: undefined });
      // a peer may send fewer continuation tokens than asked, never more than were reserved
      const draftBack = step.draft?.slice(0, draft);
      this.gate.charge(1 + (draftBack?.length ?? 0));
      return draftBack === step.draft ? step : { ...step, draft: draftBack };
    } finally {
      this.reserved -= reserve;
    }
  }

  observe(history: readonly number[]): void {
    this.committed = history;
    if (this.blocked() === null) this.inner.observe?.(history);
  }

  route(history: readonly number[], opts: RouteOptions, signal?: AbortSignal): RouteStream | null {
    if (!this.inner.route || this.blocked() !== null || Number.isFinite(this.gate.tokensLeft())) return null;
    const stream = this.inner.route(history, opts, signal);
    if (stream) this.streams.push({ start: history.length, stream });
    return stream;
  }

  /**
   * Charges the LLM tokens the answer took from its route streams: routed entries equal to the
   * committed token at their position, up to where a stream left the answer (each position once,
   * though streams may overlap). Returns how many.
   */
  chargeStreams(): number {
    const taken = new Set<number>();
    for (const { start, stream } of this.streams) {
      for (let i = 0; i < stream.entries.length && start + i < this.committed.length; i++) {
        const e = stream.entries[i]!;
        if (e.tokenId !== this.committed[start + i]) break; // the stream left the answer here
        if (e.routed) taken.add(start + i);
      }
    }
    this.streams = [];
    if (taken.size > 0) this.gate.charge(taken.size);
    return taken.size;
  }

  prepareRoute(router: Router): void {
    if (!this.gate.localOnly) this.inner.prepareRoute?.(router);
  }

  /** The peer is the caller's: closing an answer's view of it closes nothing. */
  async close(): Promise<void> {}

  private blocked(): CloudCallError | null {
    if (this.gate.localOnly) return new CloudCallError("local_only", LOCAL_ONLY_MESSAGE);
    if (this.gate.tokensLeft() - this.reserved < 1 || this.gate.bytesExhausted(this.inner.stats))
      return new CloudCallError("budget", this.gate.budgetMessage(this.reserved));
    return null;
  }
}

const NO_STATS: CloudStats = { calls: 0, failures: 0, bytesUp: 0, bytesDown: 0, sessions: 0 };

/** The terminal chat's --local-only: a peer that never connects and refuses every call as local-only. */
export function localOnlyPeer(): GuardedPeer {
  const gate: CloudGate = {
    localOnly: true,
    tokensLeft: () => 0,
    bytesExhausted: () => false,
    charge: () => {},
    budgetMessage: () => LOCAL_ONLY_MESSAGE,
  };
  const nowhere: CloudPeer = {
    kind: "none",
    stats: NO_STATS,
    state: "offline",
    learnt: new CloudLearning(),
    connect: () => Promise.reject(new CloudCallError("local_only", LOCAL_ONLY_MESSAGE)),
    next: () => Promise.reject(new CloudCallError("local_only", LOCAL_ONLY_MESSAGE)),
    close: async () => {},
  };
  return new GuardedPeer(nowhere, gate);
}
