/** Pure per-answer figures for the UI: origin counts, cloud share, and the share a τ would give. */
import type { StoredMessage } from "../../shared/bridge";
import { countOrigins, type TokenEvent } from "../../shared/events";

export interface AnswerFigures {
  tokens: number;
  cloudTokens: number;
  fallbackTokens: number;
  cloudCalls: number;
  /** cloud tokens / tokens, in [0, 1] */
  cloudShare: number;
  tokensPerSecond: number | null;
  bytesUp: number | null;
  bytesDown: number | null;
}

export function answerFigures(m: StoredMessage): AnswerFigures {
  const tokens = m.tokens ?? [];
  const n = countOrigins(tokens);
  return {
    ...n,
    cloudShare: n.tokens ? n.cloudTokens / n.tokens : 0,
    tokensPerSecond: m.summary?.tokensPerSecond ?? null,
    bytesUp: m.summary?.bytesUp ?? null,
    bytesDown: m.summary?.bytesDown ?? null,
  };
}

/**
 * The share of an answer's positions whose router confidence is below τ: what the slider would send to
 * the cloud on an answer like this one. An estimate (another τ changes the text, hence the later
 * confidences), but it is what the user needs while moving the slider: more τ, more cloud.
 */
export function routedShareAt(tokens: readonly Pick<TokenEvent, "confidence">[], tau: number): number {
  if (!tokens.length) return 0;
  let n = 0;
  for (const t of tokens) if (t.confidence < tau) n++;
  return n / tokens.length;
}

export function formatPercent(x: number): string {
  return `${(100 * x).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;
}

export function formatBytes(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KB`;
  return `${(b / 1024 / 1024).toFixed(1)} MB`;
}
