/**
 * Numeric command-line flags, checked in one place for every command (the terminal chat, browser mode):
 * a number, whole where it must be, within a range with an upper end too — an unbounded millisecond
 * value past 2^31 − 1 is a 1 ms timer to Node (TimeoutOverflowWarning), an unbounded count a runaway.
 */
import { UsageError } from "../shared/errors.js";

export interface NumberRange {
  min: number;
  max: number;
  /** a whole number */
  int?: boolean;
}

/** The largest delay Node's timers take as given (2^31 − 1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 0x7fffffff;

/** `raw` as a number within `range`, `def` when the flag is absent; a UsageError naming the flag otherwise. */
export function numberFlag(name: string, raw: string | undefined, def: number, range: NumberRange): number {
  if (raw === undefined) return def;
  const n = raw.trim() === "" ? Number.NaN : Number(raw);
  if (!Number.isFinite(n) || n < range.min || n > range.max || (range.int && !Number.isInteger(n))) {
    const what = range.int ? "a whole number" : "a number";
    throw new UsageError(`--${name}: expected ${what} from ${range.min} to ${range.max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** The ranges flags share between commands. */
export const FLAG_RANGES = {
  tau: { min: 0, max: 1 },
  share: { min: 0, max: 1 },
  /** tokens of one answer: no more than the largest context */
  maxTokens: { min: 1, max: 1 << 20, int: true },
  /** a cloud call's deadline: up to ten minutes */
  deadlineMs: { min: 1, max: 600_000 },
  /** browser mode's delay between tokens */
  paceMs: { min: 0, max: 10_000, int: true },
  port: { min: 0, max: 65_535, int: true },
  contextSize: { min: 64, max: 1 << 20, int: true },
  candidates: { min: 0, max: 20, int: true },
} satisfies Record<string, NumberRange>;
