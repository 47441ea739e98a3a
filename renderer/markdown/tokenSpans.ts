/**
 * Where each token of an answer sits in its Markdown source: the source is the tokens' texts joined,
 * so token i covers [start, end) of it (UTF-16 offsets, the unit of unist positions). Pure, no DOM.
 */
import type { Origin } from "../../shared/events";

export interface TokenLike {
  index: number;
  text: string;
  origin: Origin;
}

export interface TokenSpan {
  /** the token's own `index` (its position in the answer) */
  index: number;
  origin: Origin;
  start: number;
  end: number;
}

export interface TokenLayout {
  source: string;
  spans: TokenSpan[];
}

export function layoutTokens(tokens: readonly TokenLike[]): TokenLayout {
  const spans: TokenSpan[] = [];
  let source = "";
  for (const t of tokens) {
    spans.push({ index: t.index, origin: t.origin, start: source.length, end: source.length + t.text.length });
    source += t.text;
  }
  return { source, spans };
}

/**
 * The position in `spans` of the token holding source offset `offset`: the last span starting at or
 * before it with text (tokens with empty text hold no character). -1 before the first character.
 */
export function spanAt(spans: readonly TokenSpan[], offset: number): number {
  let lo = 0;
  let hi = spans.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (spans[mid].start <= offset) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  while (found > 0 && spans[found].start === spans[found].end) found--; // skip empty tokens sharing the offset
  return found;
}
