/**
 * How an answer hides the network, resolved once from its options: where a routed position's token
 * comes from (a `TokenSource`), how far the SLM may run ahead meanwhile, whether it may pipeline calls
 * while it does, and how long a continuation a call may bring back. Every combination gives the
 * reference decoder's tokens and origins; only the time differs.
 */
import type { Router } from "../../../shared/router.js";
import type { CloudPeer } from "../cloud/peer.js";
import { CallSource, NoCloud } from "./callSource.js";
import { ReplicaSource } from "./replicaSource.js";
import type { TokenSource } from "./routed.js";

export interface HidingOptions {
  /**
   * How many tokens the SLM may run ahead on its own guess while a cloud call is in flight, rolled
   * back if the cloud disagrees (0 = wait idle). The tokens and origins are the same either way; only
   * the time differs. Default 32: the run stops anyway when the answers are in, so the bound matters
   * only for an SLM that writes many tokens per round trip.
   */
  speculate?: number;
  /**
   * Most tokens of the LLM's continuation to ask for with a cloud call (0 = none). Each costs the
   * server one more LLM step before it answers; each accepted where the router would have gone to the
   * cloud again saves a round trip: `ContinuationPolicy` decides when to ask. Same tokens and origins
   * either way. Default 4.
   */
  continuation?: number;
  /** @deprecated the old name of `continuation` (the wire's: NextRequest.draft), read when that is absent */
  draft?: number;
  /**
   * While running ahead, ask the cloud about the routed positions of the guessed text too, when the
   * cloud has lately been confirming the SLM's guesses (`GuessPolicy`). Default true; false = never.
   */
  pipeline?: boolean;
  /**
   * Follow the cloud's replica of this SLM and router when it has one (`ReplicaSource`): one round
   * trip for a stretch of routed positions. Default true. Same tokens and origins either way.
   */
  replica?: boolean;
}

export const DEFAULT_SPECULATION = 32;
export const DEFAULT_CONTINUATION = 4;

/** The ways of hiding the network one answer uses. */
export interface Hiding {
  /** the token at a routed position: the replica's stream, a call per position, or none (no cloud) */
  source: TokenSource;
  /** most tokens the SLM runs ahead while a routed position is answered (0 = waits idle) */
  speculate: number;
  /** where run-ahead asks its pipelined calls (null: it never does) */
  pipeline: TokenSource | null;
  /** most tokens of the LLM's continuation a call asks for (0 = none) */
  continuation: number;
}

/** The hiding `opts` choose for an answer with `cloud` (null: none configured) and `router`. */
export function resolveHiding(cloud: CloudPeer | null, router: Router, opts: HidingOptions): Hiding {
  const speculate = wholeAtLeastZero(opts.speculate ?? DEFAULT_SPECULATION);
  const continuation = wholeAtLeastZero(opts.continuation ?? opts.draft ?? DEFAULT_CONTINUATION);
  if (!cloud) return { source: new NoCloud(), speculate, pipeline: null, continuation };
  const calls = new CallSource(cloud);
  const replica = cloud.route && router.replica && opts.replica !== false;
  return {
    source: replica ? new ReplicaSource(cloud, router, calls) : calls,
    speculate,
    pipeline: opts.pipeline !== false ? calls : null,
    continuation,
  };
}

const wholeAtLeastZero = (n: number): number => Math.max(0, Math.floor(n));
