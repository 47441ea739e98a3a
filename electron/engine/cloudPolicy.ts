/**
 * What the decoder learns about a cloud, per peer, to decide how far to go ahead of its answers:
 * `ContinuationPolicy` (when a call asks for a continuation) and `GuessPolicy` (whether to ask the cloud
 * about a later position while the SLM runs ahead on its guess for an earlier one).
 *
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

export class ContinuationPolicy {
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

/**
 * Whether the SLM, running ahead on its own guess while a call is in flight, should also ask the cloud
 * about the next routed position it reaches on that guessed text (a pipelined call). The answer counts
 * only if the cloud then confirms every earlier guess; otherwise that call was wasted work for the
 * server — and on a server that is slow for its load, a wasted call delays the next real one. So it
 * is done while the cloud has recently agreed with the SLM's guesses often enough: a smoothed share
 * over the last `window` routed positions that got an answer, starting from a sceptical prior (a
 * quarter) so that a pair that never agrees never pays for it.
 */
export const DEFAULT_MIN_AGREEMENT = 0.3;
const PRIOR_AGREED = 0.5;
const PRIOR_OVERRULED = 1.5;

export class GuessPolicy {
  private readonly recent: boolean[] = [];

  constructor(
    private readonly minAgreement = DEFAULT_MIN_AGREEMENT,
    private readonly window = 32,
  ) {}

  /** The estimated chance that the cloud's token is the SLM's guess. */
  get agreement(): number {
    const agreed = this.recent.filter(Boolean).length;
    return (agreed + PRIOR_AGREED) / (this.recent.length + PRIOR_AGREED + PRIOR_OVERRULED);
  }

  /** Ask ahead on guessed text? */
  get pipeline(): boolean {
    return this.agreement >= this.minAgreement;
  }

  /** Records whether the cloud's answer at a routed position was the SLM's own guess. */
  observe(agreed: boolean): void {
    this.recent.push(agreed);
    if (this.recent.length > this.window) this.recent.shift();
  }
}

/**
 * What the decoder learns about one cloud, kept by that cloud's peer (CloudPeer.learnt) across answers.
 * A policy may be replaced (tests pin one: what is learnt from timings differs from run to run).
 */
export class CloudLearning {
  /** when to ask a call for a continuation, learnt from the calls to this cloud */
  continuations = new ContinuationPolicy();
  /** whether to ask the cloud ahead, on the SLM's guessed text, learnt from this cloud's answers */
  guesses = new GuessPolicy();
}
