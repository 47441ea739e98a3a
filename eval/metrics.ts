/**
 * Pure metric helpers of the evaluation (tested without models).
 */

/** Linear interpolation of y at x over points sorted by x; null outside their range. */
export function interpolate(points: readonly { x: number; y: number }[], x: number): number | null {
  const ps = [...points].filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
  if (ps.length === 0 || x < ps[0]!.x - 1e-12 || x > ps[ps.length - 1]!.x + 1e-12) return null;
  for (let i = 0; i + 1 < ps.length; i++) {
    const a = ps[i]!;
    const b = ps[i + 1]!;
    if (x >= a.x && x <= b.x) return b.x === a.x ? Math.max(a.y, b.y) : a.y + ((b.y - a.y) * (x - a.x)) / (b.x - a.x);
  }
  return ps[ps.length - 1]!.y;
}

/** Share of the SLM-only → LLM-only gap closed: 0 at the SLM, 1 at the LLM. */
export function gapClosed(value: number, slmOnly: number, llmOnly: number): number {
  const gap = llmOnly - slmOnly;
  return Math.abs(gap) < 1e-12 ? NaN : (value - slmOnly) / gap;
}

export function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** Sample standard deviation (n − 1); NaN below two values. */
export function spread(xs: readonly number[]): number {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}
