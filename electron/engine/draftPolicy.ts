/**
 * When a cloud call should ask for a continuation (NextRequest.draft).
 *
 * A continuation token costs the server one more LLM step before it answers; it pays off only when
 * the router would send one of the next positions to the cloud too, saving a whole call. Inside a
 * cluster (the position before was routed as well) that is likely, so a continuation is always asked
 * for there. Elsewhere it is asked for only when it is nearly free: when the server's reported cost
 * for the continuation is a small share of a call's wall time — a small LLM, or a long round trip.
 * Costs are learnt from the calls themselves (exponential moving averages); a peer that reports no
 * cost gets continuations inside clusters only.
 */
export const DEFAULT_MAX_DRAFT_SHARE = 0.05;
const SMOOTHING = 0.3;

export class DraftPolicy {
  /** server ms per continuation token */
  private perTokenMs: number | null = null;
  /** wall time of a call without its continuation, ms */
  private callMs: number | null = null;

  constructor(private readonly maxShareOfCall = DEFAULT_MAX_DRAFT_SHARE) {}

  /** Tokens to ask for at a routed position (at most `max`). */
  ask(max: number, previousRouted: boolean): number {
    if (max <= 0) return 0;
    if (previousRouted) return max;
    if (this.perTokenMs === null || this.callMs === null) return 0;
    return this.perTokenMs * max <= this.maxShareOfCall * this.callMs ? max : 0;
  }

  /** Learns from a call that answered. */
  observe(step: { latencyMs: number; draft?: readonly number[]; draftMs?: number }): void {
    const draftMs = step.draft?.length && step.draftMs !== undefined ? step.draftMs : 0;
    this.callMs = smooth(this.callMs, Math.max(0, step.latencyMs - draftMs));
    if (step.draft?.length && step.draftMs !== undefined) this.perTokenMs = smooth(this.perTokenMs, step.draftMs / step.draft.length);
  }
}

function smooth(prev: number | null, x: number): number {
  return prev === null ? x : prev + SMOOTHING * (x - prev);
}
