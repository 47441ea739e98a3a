/** Half floats and Q8_0 blocks, checked against known encodings and the ggml reference rules. */
import { describe, expect, it } from "vitest";
import { hashSeed, Prng } from "../../models/prng.js";
import { dequantizeQ8_0, encodeF16, f16ToF32, f32ToF16, Q8_0_BLOCK_BYTES, quantizeQ8_0 } from "../../models/quant.js";

describe("f16", () => {
  it("encodes known values exactly", () => {
    expect(f32ToF16(0)).toBe(0x0000);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(0.5)).toBe(0x3800);
    expect(f32ToF16(65504)).toBe(0x7bff); // largest finite half
    expect(f32ToF16(1e6)).toBe(0x7c00); // overflow -> +Inf
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -26)).toBe(0x0000); // underflow
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // halfway: round to even (down)
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway: round to even (up)
  });

  it("round-trips every half value", () => {
    for (let h = 0; h < 0x10000; h++) {
      const exp = (h >> 10) & 0x1f;
      if (exp === 0x1f && h & 0x3ff) continue; // NaN payloads
      expect(f32ToF16(f16ToF32(h))).toBe(h);
    }
    expect(encodeF16([1, -2]).equals(Buffer.from([0x00, 0x3c, 0x00, 0xc0]))).toBe(true);
  });
});

describe("Q8_0", () => {
  it("stores d = amax/127 and q = round(x/d) per 32 values", () => {
    const x = Array.from({ length: 32 }, (_, i) => (i - 16) / 4); // amax = 4 (at i = 0)
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(Q8_0_BLOCK_BYTES);
    expect(f16ToF32(q.readUInt16LE(0))).toBe(f16ToF32(f32ToF16(4 / 127))); // the scale is stored as f16
    expect(q.readInt8(2)).toBe(-127);
    expect(q.readInt8(2 + 16)).toBe(0);
    expect(q.readInt8(2 + 17)).toBe(Math.round(0.25 / (4 / 127)));
  });

  it("dequantises within about half a step of the input, and all-zero blocks stay zero", () => {
    const prng = new Prng(hashSeed(7, "q8"));
    const x = prng.fillNormal(new Float32Array(32 * 50), 0.02);
    const y = dequantizeQ8_0(quantizeQ8_0(x));
    for (let b = 0; b < 50; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
      // Half a step from rounding q, plus up to 127 x the f16 rounding of the scale d (2^-11 relative).
      const d = amax / 127;
      for (let j = 0; j < 32; j++) expect(Math.abs(y[b * 32 + j]! - x[b * 32 + j]!)).toBeLessThanOrEqual(d * (0.5 + 127 * 2 ** -11) + 1e-9);
    }
    expect(Array.from(dequantizeQ8_0(quantizeQ8_0(new Float32Array(32))))).toEqual(new Array(32).fill(0));
    expect(() => quantizeQ8_0(new Float32Array(31))).toThrow(/multiple of 32/);
  });
});

describe("Prng", () => {
  it("is deterministic per (seed, label) and gives N(0, 1)-like values", () => {
    const a = new Prng(hashSeed(1, "blk.0.attn_q.weight")).fillNormal(new Float32Array(20000), 1);
    const b = new Prng(hashSeed(1, "blk.0.attn_q.weight")).fillNormal(new Float32Array(20000), 1);
    const c = new Prng(hashSeed(2, "blk.0.attn_q.weight")).fillNormal(new Float32Array(20000), 1);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(Buffer.from(a.buffer).equals(Buffer.from(c.buffer))).toBe(false);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(variance).toBeGreaterThan(0.95);
    expect(variance).toBeLessThan(1.05);
  });
});
