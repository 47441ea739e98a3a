/**
 * How fast the server reads tokens, learnt from its replies, and the extra time a request's deadline
 * allows for the tokens the server has not read yet.
 */

/**
 * The cloud's reading speed before it is measured, ms per token, and the margin on a measured one. A
 * call's deadline allows for the tokens the server has not read yet (a pasted page the background
 * sync is still uploading): the server reads them first, in order, and a deadline that counted that
 * work would mark a healthy cloud offline. Too generous a guess only delays noticing a hung server on
 * such a call; an unreachable one fails at once.
 */
export const PRIOR_READ_MS_PER_TOKEN = 5;
const READ_MARGIN = 2;
/** most extra time a call's deadline allows for catching up */
export const MAX_CATCH_UP_MS = 120_000;
/** replies that read fewer tokens than this say more about the round trip than the reading speed */
const MIN_READ_SAMPLE = 32;

export class ReadingSpeed {
  /** the server's measured reading speed, ms per token (smoothed); null until a large enough reply */
  private msPerToken: number | null = null;

  /** Extra time for a request whose server has `unread` tokens to read first. */
  catchUpMs(unread: number): number {
    const perToken = (this.msPerToken ?? PRIOR_READ_MS_PER_TOKEN) * READ_MARGIN;
    return Math.ceil(Math.min(MAX_CATCH_UP_MS, unread * perToken)); // AbortSignal.timeout takes whole ms
  }

  /** Learns from a reply that read `evaluated` tokens in `ms` (round trip included: an overestimate, the safe side). */
  learn(evaluated: number | undefined, ms: number): void {
    if (evaluated === undefined || evaluated < MIN_READ_SAMPLE) return;
    const rate = ms / evaluated;
    this.msPerToken = this.msPerToken === null ? rate : this.msPerToken + 0.3 * (rate - this.msPerToken);
  }
}
