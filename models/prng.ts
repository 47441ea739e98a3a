/**
 * Small deterministic PRNG for generated weights.
 *
 * Why not Math.random: fixtures must be byte-identical across runs and machines so that a test's
 * expectations (and a regenerated file) never drift. sfc32 is fast in V8 (pure 32-bit integer ops)
 * and statistically fine for weights. Each tensor gets its own stream, seeded from (seed, tensor
 * name), so a tensor's values don't depend on which other tensors were generated before it: two
 * models with the same embedding seed share their embedding matrices exactly.
 */

/** 32-bit FNV-1a of a string, mixed with a seed: a stable per-tensor seed. */
export function hashSeed(seed: number, label: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Extra avalanche so that nearby seeds give unrelated streams.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.nextU32(); // warm up: sfc32's first outputs are correlated with the seed
  }

  /** Uniform 32-bit unsigned integer (sfc32). */
  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Standard normal (Box-Muller, caching the second value): exact, for small draws. */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = 1 - this.next(); // (0, 1]: log(0) never happens
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /**
   * Fills `out` with N(0, std^2) values, fast: each 32-bit draw gives two normals through a
   * 65,536-entry inverse-CDF table (values quantised to 2^16 levels, tails cut at ~4.3 sigma).
   * Why: Box-Muller ran at ~27 M values/s and dominated writing a 1.5B-parameter model; the
   * table runs several times faster, and Q8_0 keeps only 255 levels anyway.
   */
  fillNormal(out: Float32Array, std: number): Float32Array {
    const t = normalTable();
    const n = out.length;
    let i = 0;
    for (; i + 1 < n; i += 2) {
      const u = this.nextU32();
      out[i] = t[u & 0xffff]! * std;
      out[i + 1] = t[u >>> 16]! * std;
    }
    if (i < n) out[i] = t[this.nextU32() & 0xffff]! * std;
    return out;
  }
}

let table: Float32Array | undefined;

/** table[i] = inverse normal CDF at (i + 0.5) / 65536. */
function normalTable(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) table[i] = inverseNormalCdf((i + 0.5) / 65536);
  }
  return table;
}

/** Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9). */
export function inverseNormalCdf(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (
      (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1)
    );
  }
  if (p > 1 - lo) return -inverseNormalCdf(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}
