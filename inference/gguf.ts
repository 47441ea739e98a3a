/**
 * Pure-TypeScript reader and writer for GGUF files (versions 2 and 3).
 *
 * Why our own: the fixtures need to *rewrite* models (drop a transformer block, copy a
 * vocabulary into a random-weight model, quantise to Q8_0) and node-llama-cpp only reads GGUF.
 * We also want a reader that keeps every metadata value's exact on-disk type, so that a file
 * copied through read -> write is byte-for-byte meaningful to llama.cpp (e.g. `block_count` must
 * stay the integer type the loader expects, `seperator_token_id` stays uint32 0xFFFFFFFF...).
 *
 * Layout (little-endian), per the GGUF spec in ggml's docs:
 *   magic "GGUF" | uint32 version | uint64 n_tensors | uint64 n_kv
 *   n_kv   x { string key | uint32 value_type | value }
 *   n_tens x { string name | uint32 n_dims | uint64 dims[n_dims] (innermost first) | uint32 ggml_type | uint64 offset }
 *   padding to `general.alignment` (default 32)
 *   tensor data; each tensor's offset is relative to the start of this data section and aligned.
 * Strings are uint64 length + UTF-8 bytes (no NUL). Arrays are uint32 item type + uint64 count + items.
 *
 * Reading is synchronous and only touches the header (metadata can be several MB for a 150K-token
 * vocabulary, tensor data is never loaded unless asked for). Writing is asynchronous and streams
 * tensor data to a file handle one chunk at a time, so writing a 1-2 GB model keeps memory low.
 */
import * as fs from "node:fs";
import { TandemError, errorMessage } from "../shared/errors.js";

/** Any problem with a file that is not a well-formed GGUF: bad magic, truncation, unknown types. */
export class GgufError extends TandemError {
  override readonly name = "GgufError";
  constructor(
    message: string,
    readonly path?: string,
  ) {
    super("gguf", path ? `${message} (${path})` : message);
  }
}

/** "GGUF" read as a little-endian uint32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types (gguf_type in ggml). */
export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Tensor element types (ggml_type). Only the ones with a known block layout are listed. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
}

/**
 * [elements per block, bytes per block] for each ggml type, from ggml's type_traits /
 * ggml-common.h static_asserts (llama.cpp as bundled with node-llama-cpp 3.21.1).
 */
const GGML_BLOCK: Readonly<Record<number, readonly [number, number]>> = {
  [GgmlType.F32]: [1, 4],
  [GgmlType.F16]: [1, 2],
  [GgmlType.BF16]: [1, 2],
  [GgmlType.F64]: [1, 8],
  [GgmlType.I8]: [1, 1],
  [GgmlType.I16]: [1, 2],
  [GgmlType.I32]: [1, 4],
  [GgmlType.I64]: [1, 8],
  [GgmlType.Q4_0]: [32, 18],
  [GgmlType.Q4_1]: [32, 20],
  [GgmlType.Q5_0]: [32, 22],
  [GgmlType.Q5_1]: [32, 24],
  [GgmlType.Q8_0]: [32, 34],
  [GgmlType.Q8_1]: [32, 36],
  [GgmlType.IQ4_NL]: [32, 18],
  [GgmlType.MXFP4]: [32, 17],
  [GgmlType.NVFP4]: [64, 36],
  [GgmlType.Q1_0]: [128, 18],
  [GgmlType.Q2_0]: [64, 18],
  [GgmlType.Q2_K]: [256, 84],
  [GgmlType.Q3_K]: [256, 110],
  [GgmlType.Q4_K]: [256, 144],
  [GgmlType.Q5_K]: [256, 176],
  [GgmlType.Q6_K]: [256, 210],
  [GgmlType.Q8_K]: [256, 292],
  [GgmlType.IQ2_XXS]: [256, 66],
  [GgmlType.IQ2_XS]: [256, 74],
  [GgmlType.IQ2_S]: [256, 82],
  [GgmlType.IQ3_XXS]: [256, 98],
  [GgmlType.IQ3_S]: [256, 110],
  [GgmlType.IQ1_S]: [256, 50],
  [GgmlType.IQ1_M]: [256, 56],
  [GgmlType.TQ1_0]: [256, 54],
  [GgmlType.TQ2_0]: [256, 66],
};

/** A metadata array. `items` holds scalars, or further GgufArrays for nested arrays. */
export interface GgufArray {
  readonly itemType: GgufType;
  readonly items: GgufValue[];
}

/** 64-bit integers are bigint so that every value survives a round trip exactly. */
export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufArray;

/** One metadata key/value pair, with the type it has (or will have) on disk. */
export interface GgufKv {
  readonly key: string;
  readonly type: GgufType;
  readonly value: GgufValue;
}

export interface GgufTensorInfo {
  readonly name: string;
  /** Dimensions innermost first, as on disk: a [rows x cols] matrix of llama.cpp is [cols, rows]. */
  readonly shape: readonly number[];
  readonly type: GgmlType;
  /** Offset relative to the start of the data section. */
  readonly offset: number;
  /** Bytes of tensor data (computed from type and shape). */
  readonly byteSize: number;
}

/** A parsed GGUF header. Tensor data stays on disk; see readTensorData / tensorChunks. */
export class GgufFile {
  constructor(
    readonly version: number,
    readonly kvs: readonly GgufKv[],
    readonly tensors: readonly GgufTensorInfo[],
    readonly alignment: number,
    /** Absolute file offset of the data section. */
    readonly dataOffset: number,
    readonly fileSize: number,
    readonly path?: string,
  ) {}

  getKv(key: string): GgufKv | undefined {
    return this.kvs.find((kv) => kv.key === key);
  }

  /** The value of a key, or undefined. */
  get(key: string): GgufValue | undefined {
    return this.getKv(key)?.value;
  }

  /** A numeric value as a JS number (bigints converted), or undefined if absent / not numeric. */
  getNumber(key: string): number | undefined {
    const v = this.get(key);
    if (typeof v === "number") return v;
    if (typeof v === "bigint") return Number(v);
    return undefined;
  }

  getString(key: string): string | undefined {
    const v = this.get(key);
    return typeof v === "string" ? v : undefined;
  }

  tensor(name: string): GgufTensorInfo | undefined {
    return this.tensors.find((t) => t.name === name);
  }

  /** The model architecture (`general.architecture`), e.g. "llama" or "qwen2". */
  get architecture(): string | undefined {
    return this.getString("general.architecture");
  }
}

// ---------------------------------------------------------------------------------------------
// Sizes

export function ggmlTypeName(type: number): string {
  return GgmlType[type] ?? `ggml_type(${type})`;
}

export function tensorElementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes of data for a tensor of this type and shape; throws GgufError for unknown types or rows not made of whole blocks. */
export function tensorByteSize(type: GgmlType, shape: readonly number[], name = "?"): number {
  const block = GGML_BLOCK[type];
  if (!block) throw new GgufError(`tensor ${name}: unsupported ggml type ${ggmlTypeName(type)}`);
  const [blockElems, blockBytes] = block;
  const rowLength = shape[0] ?? 1;
  if (rowLength % blockElems !== 0) {
    throw new GgufError(`tensor ${name}: row length ${rowLength} is not a multiple of the ${ggmlTypeName(type)} block size ${blockElems}`);
  }
  return (tensorElementCount(shape) / blockElems) * blockBytes;
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Bytes of a file or buffer, read on demand (a header can be MBs; the data section GBs). */
interface ByteSource {
  readonly size: number;
  /** Reads up to `length` bytes at `position`; may return fewer only at end of file. */
  read(position: number, length: number): Buffer;
}

function bufferSource(buf: Uint8Array): ByteSource {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { size: b.length, read: (pos, len) => b.subarray(pos, Math.min(b.length, pos + len)) };
}

function fdSource(fd: number, size: number): ByteSource {
  return {
    size,
    read(pos, len) {
      const n = Math.max(0, Math.min(len, size - pos));
      const out = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const r = fs.readSync(fd, out, done, n - done, pos + done);
        if (r === 0) break;
        done += r;
      }
      return out.subarray(0, done);
    },
  };
}

/**
 * Bounds on what a header may ask the reader to do. A hostile file is refused with a GgufError instead
 * of aborting V8 (an array of 300M entries: "invalid table size"), overflowing the stack (arrays nested
 * 200,000 deep) or running for minutes. Real models are far inside them: a 262k-token vocabulary, a
 * few hundred keys, a few thousand tensors, no nested arrays (llama.cpp refuses them).
 */
export const GGUF_LIMITS = {
  /** metadata key/value pairs */
  maxKvs: 1 << 16,
  maxTensors: 1 << 18,
  /** entries of one array */
  maxArrayLength: 1 << 24,
  /** array entries of the whole header, nested ones included (walked or kept) */
  maxTotalArrayItems: 1 << 25,
  /** arrays inside arrays */
  maxArrayDepth: 8,
  maxKeyBytes: 1 << 16,
  maxStringBytes: 1 << 24,
  /** bytes of strings kept in memory over the whole header */
  maxStringTotal: 1 << 28,
} as const;

/** Sequential little-endian reader over a ByteSource with a 1 MiB window. */
class Cursor {
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;
  pos = 0;
  /** Describes what is being read, for truncation errors. */
  context = "header";
  /** array entries seen so far and string bytes kept so far (GGUF_LIMITS totals) */
  arrayItems = 0;
  stringBytes = 0;

  constructor(
    private readonly src: ByteSource,
    readonly path?: string,
  ) {}

  fail(message: string): never {
    throw new GgufError(`corrupt GGUF: ${message} in ${this.context}`, this.path);
  }

  /** Moves past `n` bytes without reading them; they must be in the file. */
  skip(n: number): void {
    if (n > this.remaining()) {
      throw new GgufError(
        `truncated GGUF: file ends at byte ${this.src.size} while reading ${this.context} at byte ${this.pos}`,
        this.path,
      );
    }
    this.pos += n;
  }

  private ensure(n: number): { buf: Buffer; at: number } {
    let at = this.pos - this.windowStart;
    if (at < 0 || at + n > this.window.length) {
      this.window = this.src.read(this.pos, Math.max(n, 1 << 20));
      this.windowStart = this.pos;
      at = 0;
      if (this.window.length < n) {
        throw new GgufError(
          `truncated GGUF: file ends at byte ${this.src.size} while reading ${this.context} at byte ${this.pos}`,
          this.path,
        );
      }
    }
    this.pos += n;
    return { buf: this.window, at };
  }

  remaining(): number {
    return this.src.size - this.pos;
  }

  u8(): number {
    const { buf, at } = this.ensure(1);
    return buf.readUInt8(at);
  }
  i8(): number {
    const { buf, at } = this.ensure(1);
    return buf.readInt8(at);
  }
  u16(): number {
    const { buf, at } = this.ensure(2);
    return buf.readUInt16LE(at);
  }
  i16(): number {
    const { buf, at } = this.ensure(2);
    return buf.readInt16LE(at);
  }
  u32(): number {
    const { buf, at } = this.ensure(4);
    return buf.readUInt32LE(at);
  }
  i32(): number {
    const { buf, at } = this.ensure(4);
    return buf.readInt32LE(at);
  }
  f32(): number {
    const { buf, at } = this.ensure(4);
    return buf.readFloatLE(at);
  }
  f64(): number {
    const { buf, at } = this.ensure(8);
    return buf.readDoubleLE(at);
  }
  u64(): bigint {
    const { buf, at } = this.ensure(8);
    return buf.readBigUInt64LE(at);
  }
  i64(): bigint {
    const { buf, at } = this.ensure(8);
    return buf.readBigInt64LE(at);
  }

  /** A uint64 that must fit a JS number and the file (counts, lengths, dims). */
  count(what: string, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.u64();
    if (v > BigInt(max)) {
      throw new GgufError(`corrupt GGUF: ${what} ${v} is impossible at byte ${this.pos - 8} (file is ${this.src.size} bytes)`, this.path);
    }
    return Number(v);
  }

  string(max: number = GGUF_LIMITS.maxStringBytes): string {
    // A string can't be longer than what's left of the file: catches garbage lengths before allocating.
    const len = this.count(`string length in ${this.context}`, this.remaining());
    if (len > max) this.fail(`a string of ${len} bytes (the limit is ${max})`);
    this.stringBytes += len;
    if (this.stringBytes > GGUF_LIMITS.maxStringTotal) this.fail(`more than ${GGUF_LIMITS.maxStringTotal} bytes of strings`);
    const { buf, at } = this.ensure(len);
    return buf.toString("utf8", at, at + len);
  }

  /** Moves past a string without decoding it. */
  skipString(): void {
    this.skip(this.count(`string length in ${this.context}`, this.remaining()));
  }
}

/** Minimum on-disk bytes of one value of a type (used to reject impossible array counts early). */
function minValueSize(type: GgufType): number {
  switch (type) {
    case GgufType.UINT8:
    case GgufType.INT8:
    case GgufType.BOOL:
      return 1;
    case GgufType.UINT16:
    case GgufType.INT16:
      return 2;
    case GgufType.UINT32:
    case GgufType.INT32:
    case GgufType.FLOAT32:
      return 4;
    case GgufType.UINT64:
    case GgufType.INT64:
    case GgufType.FLOAT64:
    case GgufType.STRING:
      return 8;
    case GgufType.ARRAY:
      return 12;
    default:
      return 1;
  }
}

/** On-disk bytes of one value of a fixed-size type, or 0 for strings and arrays. */
function fixedSize(type: GgufType): number {
  return type === GgufType.STRING || type === GgufType.ARRAY ? 0 : minValueSize(type);
}

function readValue(c: Cursor, type: GgufType, path?: string, depth = 0): GgufValue {
  switch (type) {
    case GgufType.UINT8:
      return c.u8();
    case GgufType.INT8:
      return c.i8();
    case GgufType.UINT16:
      return c.u16();
    case GgufType.INT16:
      return c.i16();
    case GgufType.UINT32:
      return c.u32();
    case GgufType.INT32:
      return c.i32();
    case GgufType.FLOAT32:
      return c.f32();
    case GgufType.BOOL:
      return c.u8() !== 0;
    case GgufType.STRING:
      return c.string();
    case GgufType.UINT64:
      return c.u64();
    case GgufType.INT64:
      return c.i64();
    case GgufType.FLOAT64:
      return c.f64();
    case GgufType.ARRAY: {
      const { itemType, n } = arrayHead(c, path, depth);
      const items: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) items[i] = readValue(c, itemType, path, depth + 1);
      return { itemType, items };
    }
    default:
      throw new GgufError(`corrupt GGUF: unknown metadata value type ${type as number} in ${c.context}`, path);
  }
}

/** An array's item type and length, checked against the file and GGUF_LIMITS before anything is allocated. */
function arrayHead(c: Cursor, path: string | undefined, depth: number): { itemType: GgufType; n: number } {
  if (depth >= GGUF_LIMITS.maxArrayDepth) c.fail(`arrays nested more than ${GGUF_LIMITS.maxArrayDepth} deep`);
  const itemType = c.u32() as GgufType;
  if (!(itemType in GgufType)) throw new GgufError(`corrupt GGUF: unknown array item type ${itemType} in ${c.context}`, path);
  const n = c.count(`array length in ${c.context}`, Math.floor(c.remaining() / minValueSize(itemType)));
  if (n > GGUF_LIMITS.maxArrayLength) c.fail(`an array of ${n} entries (the limit is ${GGUF_LIMITS.maxArrayLength})`);
  c.arrayItems += n;
  if (c.arrayItems > GGUF_LIMITS.maxTotalArrayItems) c.fail(`more than ${GGUF_LIMITS.maxTotalArrayItems} array entries in all`);
  return { itemType, n };
}

/** Moves past a value without keeping it (the preflight needs no vocabulary): same checks, no allocation. */
function skipValue(c: Cursor, type: GgufType, path?: string, depth = 0): void {
  if (type === GgufType.STRING) return c.skipString();
  if (type !== GgufType.ARRAY) {
    if (!(type in GgufType)) throw new GgufError(`corrupt GGUF: unknown metadata value type ${type as number} in ${c.context}`, path);
    return c.skip(fixedSize(type));
  }
  const { itemType, n } = arrayHead(c, path, depth);
  const size = fixedSize(itemType);
  if (size) return c.skip(n * size);
  for (let i = 0; i < n; i++) skipValue(c, itemType, path, depth + 1);
}

export interface ReadGgufOptions {
  /**
   * Check that every tensor's data lies inside the file (default true). A truncated download then
   * fails here, with a clear message, instead of deep inside llama.cpp. Turn off to inspect the
   * metadata of a partial file.
   */
  checkTensorData?: boolean;
  /**
   * Walk metadata arrays without keeping them (they are left out of `kvs`): the preflight needs the
   * counts, the alignment and the tensor table, never a 150k-entry vocabulary. Every bound still holds.
   */
  skipArrays?: boolean;
}

function parse(src: ByteSource, path: string | undefined, opts: ReadGgufOptions): GgufFile {
  if (src.size < 4) throw new GgufError(`not a GGUF file: only ${src.size} bytes`, path);
  const c = new Cursor(src, path);
  const version = readVersion(c, src, path);
  c.context = "tensor count";
  // each tensor info takes at least 24 bytes, each key/value pair at least 13
  const nTensors = c.count("tensor count", Math.min(Math.floor(src.size / 24), GGUF_LIMITS.maxTensors));
  c.context = "metadata count";
  const nKv = c.count("metadata count", Math.min(Math.floor(src.size / 13), GGUF_LIMITS.maxKvs));
  const kvs = readKvs(c, nKv, path, opts);
  const alignment = checkedAlignment(kvs, path);
  const tensors = readTensorInfos(c, nTensors, alignment, path);
  const dataOffset = alignUp(c.pos, alignment);
  if (opts.checkTensorData !== false) checkTensorData(tensors, dataOffset, src.size, path);
  return new GgufFile(version, kvs, tensors, alignment, dataOffset, src.size, path);
}

/** The magic and the version (2 or 3); anything else is refused with what it is. */
function readVersion(c: Cursor, src: ByteSource, path: string | undefined): number {
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    const shown = src
      .read(0, 4)
      .toString("latin1")
      .replace(/[^\x20-\x7e]/g, ".");
    throw new GgufError(`not a GGUF file: bad magic "${shown}" (expected "GGUF")`, path);
  }
  c.context = "version";
  const version = c.u32();
  if (version === 1) throw new GgufError("GGUF version 1 is not supported (only 2 and 3)", path);
  if (version !== 2 && version !== 3) {
    // A big-endian file reads as version 0x02000000/0x03000000 here.
    const hint = version === 0x02000000 || version === 0x03000000 ? " (big-endian GGUF is not supported)" : "";
    throw new GgufError(`unsupported GGUF version ${version}${hint}`, path);
  }
  return version;
}

function readKvs(c: Cursor, nKv: number, path: string | undefined, opts: ReadGgufOptions): GgufKv[] {
  const kvs: GgufKv[] = [];
  for (let i = 0; i < nKv; i++) {
    c.context = `metadata key #${i}`;
    const key = c.string(GGUF_LIMITS.maxKeyBytes);
    c.context = `metadata "${key.slice(0, 200)}"`;
    const type = c.u32() as GgufType;
    if (!(type in GgufType)) throw new GgufError(`corrupt GGUF: unknown metadata type ${type} for "${key.slice(0, 200)}"`, path);
    if (opts.skipArrays && type === GgufType.ARRAY) skipValue(c, type, path);
    else kvs.push({ key, type, value: readValue(c, type, path) });
  }
  return kvs;
}

/** `alignmentOf(kvs)`, which a file read must have as a power of two. */
function checkedAlignment(kvs: readonly GgufKv[], path: string | undefined): number {
  const a = alignmentOf(kvs);
  if (!Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
    const given = kvs.find((kv) => kv.key === "general.alignment")?.value;
    throw new GgufError(`corrupt GGUF: general.alignment ${String(given)} is not a power of two`, path);
  }
  return a;
}

function readTensorInfos(c: Cursor, nTensors: number, alignment: number, path: string | undefined): GgufTensorInfo[] {
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    c.context = `tensor info #${i}`;
    const name = c.string(GGUF_LIMITS.maxKeyBytes);
    c.context = `tensor info "${name.slice(0, 200)}"`;
    const nDims = c.u32();
    if (nDims > 8) throw new GgufError(`corrupt GGUF: tensor "${name}" has ${nDims} dimensions`, path);
    const shape: number[] = [];
    for (let d = 0; d < nDims; d++) shape.push(c.count(`dimension of "${name}"`));
    // a product past 2^53 is no longer exact: no real tensor comes near it
    if (tensorElementCount(shape) > Number.MAX_SAFE_INTEGER) c.fail(`tensor "${name}" claims ${shape.join(" x ")} elements`);
    const type = c.u32() as GgmlType;
    const offset = c.count(`offset of "${name}"`);
    if (offset % alignment !== 0) {
      throw new GgufError(`corrupt GGUF: tensor "${name}" offset ${offset} is not aligned to ${alignment}`, path);
    }
    tensors.push({ name, shape, type, offset, byteSize: tensorByteSize(type, shape, name) });
  }
  return tensors;
}

/** Every tensor's data lies inside the file: a truncated download fails here, not inside llama.cpp. */
function checkTensorData(tensors: readonly GgufTensorInfo[], dataOffset: number, size: number, path: string | undefined): void {
  for (const t of tensors) {
    const end = dataOffset + t.offset + t.byteSize;
    if (end > size) {
      throw new GgufError(`truncated GGUF: tensor "${t.name}" data ends at byte ${end} but the file has only ${size} bytes`, path);
    }
  }
}

/** Parses the header of a GGUF file on disk (synchronous; reads only the header). */
export function readGguf(path: string, opts: ReadGgufOptions = {}): GgufFile {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (e) {
    throw new GgufError(`cannot open: ${errorMessage(e)}`, path);
  }
  try {
    const size = fs.fstatSync(fd).size;
    return parse(fdSource(fd, size), path, opts);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses a GGUF held in memory (tests, small files). */
export function parseGguf(buf: Uint8Array, opts: ReadGgufOptions = {}): GgufFile {
  return parse(bufferSource(buf), undefined, opts);
}

function tensorOf(file: GgufFile, tensor: GgufTensorInfo | string): GgufTensorInfo {
  if (typeof tensor !== "string") return tensor;
  const t = file.tensor(tensor);
  if (!t) throw new GgufError(`no tensor named "${tensor}"`, file.path);
  return t;
}

/** Reads one tensor's bytes (synchronous). Meant for small tensors; use tensorChunks for big ones. */
export function readTensorData(file: GgufFile, tensor: GgufTensorInfo | string): Buffer {
  const t = tensorOf(file, tensor);
  if (!file.path) throw new GgufError("readTensorData needs a GgufFile read from a path");
  const fd = fs.openSync(file.path, "r");
  try {
    const buf = fdSource(fd, fs.fstatSync(fd).size).read(file.dataOffset + t.offset, t.byteSize);
    if (buf.length !== t.byteSize) {
      throw new GgufError(`truncated GGUF: tensor "${t.name}" data extends beyond the end of the file`, file.path);
    }
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

/** Streams one tensor's bytes in chunks (for copying large tensors without holding them whole). */
export async function* tensorChunks(file: GgufFile, tensor: GgufTensorInfo | string, chunkSize = 4 << 20): AsyncGenerator<Buffer> {
  const t = tensorOf(file, tensor);
  if (!file.path) throw new GgufError("tensorChunks needs a GgufFile read from a path");
  const fh = await fs.promises.open(file.path, "r");
  try {
    for (let done = 0; done < t.byteSize;) {
      const n = Math.min(chunkSize, t.byteSize - done);
      const buf = Buffer.allocUnsafe(n);
      const { bytesRead } = await fh.read(buf, 0, n, file.dataOffset + t.offset + done);
      if (bytesRead === 0) {
        throw new GgufError(`truncated GGUF: tensor "${t.name}" data extends beyond the end of the file`, file.path);
      }
      done += bytesRead;
      yield bytesRead === n ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Tensor data for the writer: bytes, or a function producing chunks (possibly lazily / async). */
export type TensorData = Uint8Array | (() => Iterable<Uint8Array> | AsyncIterable<Uint8Array>);

export interface GgufTensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: GgmlType;
  readonly data: TensorData;
}

export interface GgufWriteSpec {
  /** GGUF version to write; default 3. */
  readonly version?: 2 | 3;
  readonly kvs: readonly GgufKv[];
  readonly tensors: readonly GgufTensorSpec[];
}

/** Growable little-endian byte buffer for the header. */
class HeaderWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // room() may reallocate this.buf, so it must run before this.buf is read (hence `at` first).
  u8(v: number) {
    const at = this.room(1);
    this.buf.writeUInt8(v, at);
  }
  i8(v: number) {
    const at = this.room(1);
    this.buf.writeInt8(v, at);
  }
  u16(v: number) {
    const at = this.room(2);
    this.buf.writeUInt16LE(v, at);
  }
  i16(v: number) {
    const at = this.room(2);
    this.buf.writeInt16LE(v, at);
  }
  u32(v: number) {
    const at = this.room(4);
    this.buf.writeUInt32LE(v, at);
  }
  i32(v: number) {
    const at = this.room(4);
    this.buf.writeInt32LE(v, at);
  }
  f32(v: number) {
    const at = this.room(4);
    this.buf.writeFloatLE(v, at);
  }
  f64(v: number) {
    const at = this.room(8);
    this.buf.writeDoubleLE(v, at);
  }
  u64(v: bigint | number) {
    const at = this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
  }
  i64(v: bigint | number) {
    const at = this.room(8);
    this.buf.writeBigInt64LE(BigInt(v), at);
  }
  string(s: string) {
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    const at = this.room(n);
    this.buf.write(s, at, n, "utf8");
  }
  pad(alignment: number) {
    this.room(alignUp(this.length, alignment) - this.length);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function expectNumber(v: GgufValue, key: string): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "boolean") return v ? 1 : 0;
  throw new GgufError(`metadata "${key}": expected a number, got ${typeof v}`);
}

function writeValue(w: HeaderWriter, type: GgufType, v: GgufValue, key: string): void {
  switch (type) {
    case GgufType.UINT8:
      return w.u8(expectNumber(v, key));
    case GgufType.INT8:
      return w.i8(expectNumber(v, key));
    case GgufType.UINT16:
      return w.u16(expectNumber(v, key));
    case GgufType.INT16:
      return w.i16(expectNumber(v, key));
    case GgufType.UINT32:
      return w.u32(expectNumber(v, key));
    case GgufType.INT32:
      return w.i32(expectNumber(v, key));
    case GgufType.FLOAT32:
      return w.f32(expectNumber(v, key));
    case GgufType.FLOAT64:
      return w.f64(expectNumber(v, key));
    case GgufType.BOOL:
      return w.u8(v ? 1 : 0);
    case GgufType.UINT64:
      return w.u64(typeof v === "bigint" ? v : BigInt(expectNumber(v, key)));
    case GgufType.INT64:
      return w.i64(typeof v === "bigint" ? v : BigInt(expectNumber(v, key)));
    case GgufType.STRING:
      if (typeof v !== "string") throw new GgufError(`metadata "${key}": expected a string`);
      return w.string(v);
    case GgufType.ARRAY: {
      if (typeof v !== "object" || v === null || !("items" in v)) throw new GgufError(`metadata "${key}": expected an array`);
      w.u32(v.itemType);
      w.u64(v.items.length);
      for (const item of v.items) writeValue(w, v.itemType, item, key);
      return;
    }
    default:
      throw new GgufError(`metadata "${key}": unknown type ${type as number}`);
  }
}

/** Header bytes (magic through tensor infos, padded) plus each tensor's data offset. */
function encodeHeader(spec: GgufWriteSpec, alignment: number): { header: Buffer; offsets: number[]; sizes: number[] } {
  const w = new HeaderWriter();
  w.u32(GGUF_MAGIC);
  w.u32(spec.version ?? 3);
  w.u64(spec.tensors.length);
  w.u64(spec.kvs.length);
  const seen = new Set<string>();
  for (const kv of spec.kvs) {
    if (seen.has(kv.key)) throw new GgufError(`duplicate metadata key "${kv.key}"`);
    seen.add(kv.key);
    w.string(kv.key);
    w.u32(kv.type);
    writeValue(w, kv.type, kv.value, kv.key);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of spec.tensors) {
    if (names.has(t.name)) throw new GgufError(`duplicate tensor name "${t.name}"`);
    names.add(t.name);
    const size = tensorByteSize(t.type, t.shape, t.name);
    w.string(t.name);
    w.u32(t.shape.length);
    for (const d of t.shape) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset = alignUp(offset + size, alignment);
  }
  // llama.cpp pads the header to the alignment only when a data section follows; a
  // vocabulary-only file (no tensors) ends right after the metadata.
  if (spec.tensors.length > 0) w.pad(alignment);
  return { header: w.bytes(), offsets, sizes };
}

/** The alignment a file with these KVs must use: `general.alignment` or 32. */
export function alignmentOf(kvs: readonly GgufKv[]): number {
  const kv = kvs.find((k) => k.key === "general.alignment");
  return kv ? Number(kv.value) : GGUF_DEFAULT_ALIGNMENT;
}

/**
 * Writes a GGUF file, streaming each tensor's data in order to a file handle. Data given as a
 * function is only called when its tensor's turn comes, so a generator can produce a 1 GB model
 * chunk by chunk. Each tensor must produce exactly tensorByteSize(type, shape) bytes.
 * Writes `path` directly: callers wanting atomicity write to a temp name and rename.
 * Returns the number of bytes written.
 */
export async function writeGguf(path: string, spec: GgufWriteSpec): Promise<number> {
  const alignment = alignmentOf(spec.kvs);
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new GgufError(`general.alignment ${alignment} is not a power of two`);
  }
  const { header, offsets, sizes } = encodeHeader(spec, alignment);
  const fh = await fs.promises.open(path, "w");
  try {
    let pos = 0;
    const write = async (chunk: Uint8Array) => {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done, pos + done);
        done += bytesWritten;
      }
      pos += chunk.byteLength;
    };
    await write(header);
    const dataStart = header.length;
    for (let i = 0; i < spec.tensors.length; i++) {
      const t = spec.tensors[i]!;
      const start = dataStart + offsets[i]!;
      if (pos < start) await write(Buffer.alloc(start - pos));
      let written = 0;
      const chunks = typeof t.data === "function" ? t.data() : [t.data];
      for await (const chunk of chunks) {
        written += chunk.byteLength;
        if (written > sizes[i]!) break;
        await write(chunk);
      }
      if (written !== sizes[i]) {
        throw new GgufError(
          `tensor "${t.name}": got ${written > sizes[i]! ? `more than ${sizes[i]}` : written} bytes of data, expected ${sizes[i]} for ${ggmlTypeName(t.type)} [${t.shape.join(", ")}]`,
        );
      }
    }
    // Pad the file to the alignment, as llama.cpp's gguf writer does.
    const end = spec.tensors.length > 0 ? alignUp(pos, alignment) : pos;
    if (end > pos) await write(Buffer.alloc(end - pos));
    return pos;
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Metadata helpers

/** Builds a KV; small helpers so callers don't spell out GgufType everywhere. */
export const kv = {
  string: (key: string, value: string): GgufKv => ({ key, type: GgufType.STRING, value }),
  u32: (key: string, value: number): GgufKv => ({ key, type: GgufType.UINT32, value }),
  i32: (key: string, value: number): GgufKv => ({ key, type: GgufType.INT32, value }),
  f32: (key: string, value: number): GgufKv => ({ key, type: GgufType.FLOAT32, value }),
  bool: (key: string, value: boolean): GgufKv => ({ key, type: GgufType.BOOL, value }),
  u64: (key: string, value: bigint): GgufKv => ({ key, type: GgufType.UINT64, value }),
  array: (key: string, itemType: GgufType, items: GgufValue[]): GgufKv => ({ key, type: GgufType.ARRAY, value: { itemType, items } }),
};

/**
 * Returns kvs with `key` set to `value`. An existing key keeps its position and its on-disk type
 * (why: llama.cpp reads some keys with a fixed integer type; converting uint32 to int32 or
 * uint64 can make the loader reject the file). A new key is appended with `typeIfNew`.
 */
export function setKv(kvs: readonly GgufKv[], key: string, value: GgufValue, typeIfNew?: GgufType): GgufKv[] {
  const i = kvs.findIndex((k) => k.key === key);
  const out = [...kvs];
  if (i >= 0) {
    const type = out[i]!.type;
    const coerced = type === GgufType.UINT64 || type === GgufType.INT64 ? BigInt(value as number | bigint) : value;
    out[i] = { key, type, value: coerced };
  } else {
    if (typeIfNew === undefined) throw new GgufError(`setKv: "${key}" is new and no type was given`);
    out.push({ key, type: typeIfNew, value });
  }
  return out;
}

/** A tensor spec that copies a tensor of an existing file (streamed), optionally renamed. */
export function copiedTensor(file: GgufFile, tensor: GgufTensorInfo, name = tensor.name): GgufTensorSpec {
  return { name, shape: tensor.shape, type: tensor.type, data: () => tensorChunks(file, tensor) };
}
