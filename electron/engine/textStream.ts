/**
 * Turns a stream of token IDs into a stream of text that is always valid UTF-8 and never shows the
 * start of a stop string before we know whether it completes.
 *
 * Detokenising one token at a time splits multi-byte characters (an emoji can span two or more byte
 * tokens) and loses tokenizer context (SentencePiece leading spaces). So each pending token run is
 * detokenised with the previously released tokens as context, and held back while it ends in U+FFFD.
 */

export type Detokenize = (tokens: readonly number[], lastTokens: readonly number[]) => string;

/** Longest run of tokens held back waiting for a character to complete; a model emitting truly
 * invalid bytes must not stall the stream forever (UTF-8 characters are at most 4 bytes). */
const MAX_PENDING_TOKENS = 8;
const CONTEXT_TOKENS = 8;

export interface StreamStep {
  /** text released by this token (possibly "") */
  text: string;
  /** a stop string completed: generation must end; text excludes the stop string */
  stopped: boolean;
}

export class TokenTextStream {
  private pending: number[] = [];
  private context: number[] = [];
  /** decoded text not yet released because it may be the start of a stop string */
  private held = "";
  private released = "";
  private stoppedFlag = false;

  constructor(
    private readonly detokenize: Detokenize,
    private readonly stopStrings: readonly string[] = [],
  ) {}

  get text(): string {
    return this.released;
  }

  get stopped(): boolean {
    return this.stoppedFlag;
  }

  push(token: number): StreamStep {
    if (this.stoppedFlag) return { text: "", stopped: true };
    this.pending.push(token);
    const decoded = this.detokenize(this.pending, this.context);
    if (decoded.endsWith("\uFFFD") && this.pending.length < MAX_PENDING_TOKENS) return { text: "", stopped: false };
    this.context.push(...this.pending);
    if (this.context.length > CONTEXT_TOKENS) this.context.splice(0, this.context.length - CONTEXT_TOKENS);
    this.pending = [];
    return this.release(this.held + decoded, false);
  }

  /** End of generation: release whatever is held (an incomplete stop string is just text). */
  flush(): StreamStep {
    if (this.stoppedFlag) return { text: "", stopped: true };
    let tail = "";
    if (this.pending.length > 0) {
      tail = this.detokenize(this.pending, this.context);
      this.pending = [];
    }
    return this.release(this.held + tail, true);
  }

  private release(candidate: string, final: boolean): StreamStep {
    let stopAt = -1;
    for (const s of this.stopStrings) {
      if (!s) continue;
      const i = candidate.indexOf(s);
      if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
    }
    if (stopAt >= 0) {
      this.stoppedFlag = true;
      this.held = "";
      return this.emit(candidate.slice(0, stopAt), true);
    }
    const keep = final ? 0 : longestStopPrefixSuffix(candidate, this.stopStrings);
    this.held = candidate.slice(candidate.length - keep);
    return this.emit(candidate.slice(0, candidate.length - keep), false);
  }

  private emit(text: string, stopped: boolean): StreamStep {
    this.released += text;
    return { text, stopped };
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
export function longestStopPrefixSuffix(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
      if (text.endsWith(s.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}
