/**
 * Number formats for tensor data: IEEE half floats and ggml's Q8_0 blocks.
 *
 * Why here and not in gguf.ts: the GGUF container does not care what the bytes mean; only the
 * model generators (fixtures.ts) need to produce F16 and Q8_0 weights, and tests need to read
 * them back to check the encoding.
 *
 * Q8_0 (ggml-common.h, block_q8_0): rows are cut into blocks of 32 values; each block is one
 * fp16 scale d = max|x| / 127 followed by 32 int8 q = round(x / d); value = d * q. 34 bytes a block.
 */

export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 -> IEEE binary16 bits, round to nearest even (same results as ggml's scalar path). */
export function f32ToF16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    // Subnormal half (or zero).
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // a carry into the exponent is correct (up to Inf)
  return sign | half;
}

/** IEEE binary16 bits -> number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Encodes float values as little-endian F16 bytes. */
export function encodeF16(values: ArrayLike<number>): Buffer {
  const out = Buffer.allocUnsafe(values.length * 2);
  for (let i = 0; i < values.length; i++) out.writeUInt16LE(f32ToF16(values[i]!), i * 2);
  return out;
}

/** Encodes float values as little-endian F32 bytes. */
export function encodeF32(values: ArrayLike<number>): Buffer {
  const f = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
}

/**
 * Quantises values (a whole number of 32-value blocks, in row order) to Q8_0 bytes.
 * Mirrors quantize_row_q8_0_ref: d = amax/127, q = round(x/d) (round half away from zero).
 */
export function quantizeQ8_0(values: ArrayLike<number>): Buffer {
  if (values.length % Q8_0_BLOCK !== 0) {
    throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${values.length}`);
  }
  const x = values instanceof Float32Array ? values : Float32Array.from(values); // monomorphic loop
  const nBlocks = x.length / Q8_0_BLOCK;
  const out = Buffer.allocUnsafe(nBlocks * Q8_0_BLOCK_BYTES);
  // Typed views instead of Buffer.writeInt8 per value: ~4x faster, which matters for 1B+ values.
  const qs = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b < nBlocks; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const a = Math.abs(x[base + j]!);
      if (a > amax) amax = a;
    }
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    const h = f32ToF16(d);
    out[o] = h & 0xff;
    out[o + 1] = h >>> 8;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = x[base + j]! * id;
      // C roundf (half away from zero) as add-half-and-truncate: |v| <= 127 by construction,
      // and this is ~1.7x faster than Math.round. (ggml computes v in float32; ties can
      // differ in the last bit, which doesn't matter for generated weights.)
      qs[o + 2 + j] = (v < 0 ? v - 0.5 : v + 0.5) | 0;
    }
  }
  return out;
}

/** Decodes Q8_0 bytes back to floats (tests and inspection). */
export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length % Q8_0_BLOCK_BYTES !== 0) throw new Error(`Q8_0 data must be whole ${Q8_0_BLOCK_BYTES}-byte blocks`);
  const nBlocks = buf.length / Q8_0_BLOCK_BYTES;
  const out = new Float32Array(nBlocks * Q8_0_BLOCK);
  for (let b = 0; b < nBlocks; b++) {
    const o = b * Q8_0_BLOCK_BYTES;
    const d = f16ToF32(buf.readUInt16LE(o));
    for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * buf.readInt8(o + 2 + j);
  }
  return out;
}
