/**
 * The token at a routed position from a call of its own (CloudPeer.next): the blocking decoder's way,
 * and what the faster ways fall back on. The peer keeps the server's copy of the conversation current
 * in the background when it can (`observe`: background sync), so a call carries only the last tokens.
 */
import { errorMessage } from "../../../shared/errors.js";
import type { SamplingSettings } from "../../../shared/sampling.js";
import { CloudCallError, fallbackReason, sentNothing, type CloudPeer } from "../cloud/peer.js";
import { Pending, type RoutedAt, type RoutedResult, type TokenSource } from "./routed.js";

export class CallSource implements TokenSource {
  constructor(private readonly cloud: CloudPeer) {}

  ask(at: RoutedAt): Pending {
    const asked = this.cloud.learnt.continuations.ask(at.continuation, at.previousRouted);
    return new Pending(callCloud(this.cloud, at.history, at.signal, asked, at.sampling));
  }

  committed(history: readonly number[]): void {
    this.cloud.observe?.(history);
  }

  close(): void {}
}

/**
 * One call for the position after `history`, asking for `continuation` tokens of the LLM's
 * continuation (drawn with `sampling`, absent: greedy): the cloud's token, or the SLM's own marked fallback when the call fails (never rejects).
 */
export async function callCloud(
  cloud: CloudPeer,
  history: readonly number[],
  signal: AbortSignal | undefined,
  continuation: number,
  sampling?: SamplingSettings,
): Promise<RoutedResult> {
  const t0 = performance.now();
  try {
    const opts = { ...(continuation > 0 ? { draft: continuation } : {}), ...(sampling ? { sampling } : {}) };
    const c = await cloud.next(history, signal, continuation > 0 || sampling ? opts : undefined);
    cloud.learnt.continuations.observe(c);
    const verdict = { tokenId: c.tokenId, logprob: c.logprob, top: c.top };
    return { kind: "cloud", tokenId: c.tokenId, latencyMs: c.latencyMs, verdict, continuation: c.draft?.slice(0, continuation) ?? [] };
  } catch (err) {
    if (signal?.aborted) return { kind: "aborted" };
    return {
      kind: "fallback",
      reason: err instanceof CloudCallError ? fallbackReason(err) : `refused: cloud error: ${errorMessage(err)}`,
      // a call skipped (the cloud known to be down, a budget, a local-only conversation) cost no network time
      latencyMs: err instanceof CloudCallError && sentNothing(err) ? null : performance.now() - t0,
    };
  }
}

/** No cloud configured: every routed position keeps the SLM's own token, marked fallback. */
export class NoCloud implements TokenSource {
  ask(): Pending {
    return new Pending(Promise.resolve({ kind: "fallback", reason: "no cloud configured", latencyMs: null }), true);
  }
  committed(): void {}
  close(): void {}
}
