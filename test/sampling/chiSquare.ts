/**
 * Pearson's chi-square test of observed token counts against a model's probabilities, at p = 0.001,
 * with its power check: the same counts against a slightly wrong distribution (the probabilities at
 * temperature 1.1 instead of 1) must fail, so a pass is not the test being unable to tell.
 */

/** z at the 0.999 quantile of the standard normal */
const Z_999 = 3.0902;
/** the wrong distribution the power check uses: the model's at this temperature */
export const WRONG_TEMPERATURE = 1.1;

/** The chi-square critical value for `df` degrees of freedom at p = 0.001 (Wilson–Hilferty; within 1% for df ≥ 3). */
export function critical001(df: number): number {
  const a = 2 / (9 * df);
  return df * (1 - a + Z_999 * Math.sqrt(a)) ** 3;
}

/** The statistic over bins of tokens expected at least 5 times each, the rest pooled (pooled into the last bin while under 5). */
export function chiSquare(counts: ReadonlyMap<number, number>, probs: readonly { tokenId: number; weight: number }[], n: number) {
  const total = probs.reduce((s, c) => s + c.weight, 0);
  const sorted = [...probs].sort((a, b) => b.weight - a.weight);
  const bins: { expected: number; observed: number }[] = [];
  const rest = { expected: 0, observed: 0 };
  for (const c of sorted) {
    const expected = (n * c.weight) / total;
    const observed = counts.get(c.tokenId) ?? 0;
    const bin = expected >= 5 ? { expected, observed } : rest;
    if (bin !== rest) bins.push(bin);
    else {
      rest.expected += expected;
      rest.observed += observed;
    }
  }
  if (rest.expected >= 5 || bins.length === 0) bins.push(rest);
  else {
    bins[bins.length - 1]!.expected += rest.expected;
    bins[bins.length - 1]!.observed += rest.observed;
  }
  const stat = bins.reduce((s, b) => s + (b.observed - b.expected) ** 2 / b.expected, 0);
  return { stat, df: bins.length - 1 };
}

/** Whether the counts match `probs`, and whether they fail against the slightly wrong distribution. */
export function chiSquareTest(counts: ReadonlyMap<number, number>, probs: readonly { tokenId: number; weight: number }[], n: number) {
  const right = chiSquare(counts, probs, n);
  const wrongProbs = probs.map((c) => ({ tokenId: c.tokenId, weight: c.weight ** (1 / WRONG_TEMPERATURE) }));
  const wrong = chiSquare(counts, wrongProbs, n);
  return {
    right,
    wrong,
    passes: right.df >= 3 && right.stat < critical001(right.df),
    wrongFails: wrong.stat > critical001(wrong.df),
  };
}
