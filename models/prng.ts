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

    /** Standard normal (Box-Muller, caching the second value). */
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

    /** Fills `out` with N(0, std^2) values. */
    fillNormal(out: Float32Array, std: number): Float32Array {
        for (let i = 0; i < out.length; i++) out[i] = this.normal() * std;
        return out;
    }
}
