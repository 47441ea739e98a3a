/**
 * What the collaborative decoder needs from a cloud: the LLM's next token after a token history.
 * Implemented by the client of Tandem's own token server (tandemClient.ts) and, later, by adapters for
 * existing serving engines. A peer never decides about fallbacks: it answers or throws CloudCallError,
 * and the decoder turns a failure into the SLM's own token marked `fallback`.
 */
import type { ModelIdentity, TokenLogprob } from "../../../shared/protocol.js";
import type { Router } from "../../../shared/router.js";
import type { SamplingSettings } from "../../../shared/sampling.js";
import type { RouteStream } from "./routeStream.js";
import type { CloudLearning } from "../cloudPolicy.js";
import { TandemError } from "../../../shared/errors.js";

export interface CloudStep {
  tokenId: number;
  /** absent when the peer was asked for the token only (TandemClientOptions.logprob) */
  logprob?: number;
  top: TokenLogprob[];
  /** wall time of the call, ms */
  latencyMs: number;
  /** tokens the server evaluated for this call, when it reports it */
  evaluated?: number;
  /** the LLM's greedy continuation after `tokenId`, when asked for (`NextOptions.draft`) */
  draft?: number[];
  /** time the server reports it spent on the continuation, ms (when it reports it) */
  draftMs?: number;
}

export interface NextOptions {
  /** tokens of the LLM's continuation to return after the predicted one (a peer may return fewer) */
  draft?: number;
  /**
   * Draw the token (and each continuation token) with these settings at its position
   * (shared/sampling.ts); absent: greedy. A peer that cannot sample with them throws CloudCallError.
   */
  sampling?: SamplingSettings;
}

export interface RouteOptions {
  tau: number;
  /** the device's router: the replica runs the same one (Router.replica) */
  router: Router;
  /** the answer position of the routed position after the history */
  position: number;
  /** most positions the stream may cover */
  max: number;
  /** how the answer is sampled (absent: greedy): the replica and the LLM draw with it */
  sampling?: SamplingSettings;
}

export interface CloudStats {
  calls: number;
  failures: number;
  bytesUp: number;
  bytesDown: number;
  /** sessions (re-)created */
  sessions: number;
  /** token IDs sent to the cloud (deltas, re-syncs), where the peer counts them */
  tokensUp?: number;
}

export type CloudState = "unknown" | "online" | "offline";

export interface CloudPeer {
  readonly kind: string;
  readonly stats: Readonly<CloudStats>;
  readonly state: CloudState;
  /** what the decoder learns about this cloud across answers (when a continuation pays, whether it confirms guesses) */
  readonly learnt: CloudLearning;
  /** Opens a session and checks the vocabulary. Throws VocabularyMismatchError on a mismatch. */
  connect(device: ModelIdentity, signal?: AbortSignal): Promise<ModelIdentity>;
  /** The LLM's next token after `history` (all tokens of the conversation so far): greedy, or drawn with `opts.sampling`. */
  next(history: readonly number[], signal?: AbortSignal, opts?: NextOptions): Promise<CloudStep>;
  /**
   * The committed history so far (called after every token). A peer that can keeps the server's copy
   * current in the background so the next call sends almost nothing. Must return at once and never
   * throw; `history` only grows until the next answer, so a peer may keep the reference and a length.
   */
  observe?(history: readonly number[]): void;
  /**
   * A cloud with a replica of the device's SLM: starts the routed decoding from the position after
   * `history`, which the router sent to the cloud (RouteRequest). Returns null at once when this cloud
   * cannot run the device's SLM or `opts.router`; failures arrive through the stream.
   */
  route?(history: readonly number[], opts: RouteOptions, signal?: AbortSignal): RouteStream | null;
  /** Readies the replica for `router` in the background (e.g. uploads its network); called when an answer starts. */
  prepareRoute?(router: Router): void;
  close(): Promise<void>;
}

export type CloudFailure =
  | "offline" // the client is backing off after recent failures
  | "timeout"
  | "unreachable"
  | "http"
  | "malformed"
  | "aborted"
  | "vocab_mismatch"
  | "budget" // the user's cap on cloud tokens or bytes is reached (cloudControl/guardedPeer.ts)
  | "local_only"; // the conversation is local-only: nothing leaves the device

export class CloudCallError extends TandemError {
  constructor(
    readonly reason: CloudFailure,
    message: string,
    readonly status?: number,
  ) {
    super(reason, message);
    this.name = "CloudCallError";
  }
}

/** The cause a fallback token names (the inspector, the legend, the status): one of a few words a user can act on. */
export type FallbackCause = "offline" | "timeout" | "refused" | "budget" | "local-only";

export function fallbackCause(reason: CloudFailure): FallbackCause {
  switch (reason) {
    case "offline":
    case "unreachable":
    case "aborted":
      return "offline";
    case "timeout":
      return "timeout";
    case "budget":
      return "budget";
    case "local_only":
      return "local-only";
    default:
      return "refused"; // the cloud answered, but not with a token: an HTTP error, a malformed reply, another vocabulary
  }
}

/** A fallback token's reason: its cause first, then the detail ("timeout: no answer from the cloud within 1500 ms"). */
export function fallbackReason(err: CloudCallError): string {
  return `${fallbackCause(err.reason)}: ${err.message}`;
}

/** Whether a failure cost no network time (the call was never sent): such a fallback is not a cloud call. */
export function sentNothing(err: CloudCallError): boolean {
  return err.reason === "offline" || err.reason === "budget" || err.reason === "local_only";
}
