/**
 * Deriving a smaller model from a real one by removing transformer blocks.
 *
 * Why: stories260K is the only pretrained model reachable offline. Dropping one of its five
 * blocks gives a smaller network that shares the vocabulary and mostly agrees with the full
 * model, i.e. a genuine small/large pair for measuring routing quality. Per
 * shared/models/README.md, dropping block 2 gives the lowest greedy disagreement (~40%);
 * block 0 is essential (75%).
 *
 * The rewrite keeps every other tensor's bytes and every metadata value's on-disk type (notably
 * `<arch>.block_count`, which llama.cpp reads with a fixed integer type).
 */
import { copiedTensor, GgufError, GgufType, type GgufTensorSpec, readGguf, setKv, writeGguf } from "../inference/gguf.js";

const BLOCK_TENSOR = /^blk\.(\d+)\.(.+)$/;

export interface DropBlocksOptions {
  src: string;
  out: string;
  /** Indices of the blocks to remove (0-based). */
  drop: readonly number[];
  /** New general.name; default "<old name> (blocks N removed)". */
  name?: string;
}

/**
 * Writes `out`: `src` without the given blocks, the remaining blocks renumbered 0..n-1 in order
 * and `<arch>.block_count` updated. Tensors are streamed from `src`. Returns the bytes written.
 */
export async function dropBlocks(opts: DropBlocksOptions): Promise<number> {
  const file = readGguf(opts.src);
  const arch = file.architecture;
  if (!arch) throw new GgufError("no general.architecture", opts.src);
  const countKey = `${arch}.block_count`;
  const nBlocks = file.getNumber(countKey);
  if (nBlocks === undefined) throw new GgufError(`no ${countKey}`, opts.src);
  const drop = new Set(opts.drop);
  for (const b of drop) {
    if (!Number.isInteger(b) || b < 0 || b >= nBlocks) throw new Error(`cannot drop block ${b}: the model has blocks 0..${nBlocks - 1}`);
  }
  if (drop.size >= nBlocks) throw new Error("cannot drop every block");

  // Old block index -> new index.
  const renumber = new Map<number, number>();
  for (let old = 0, next = 0; old < nBlocks; old++) if (!drop.has(old)) renumber.set(old, next++);

  const tensors: GgufTensorSpec[] = [];
  for (const t of file.tensors) {
    const m = BLOCK_TENSOR.exec(t.name);
    if (!m) {
      tensors.push(copiedTensor(file, t));
      continue;
    }
    const newIndex = renumber.get(Number(m[1]));
    if (newIndex !== undefined) tensors.push(copiedTensor(file, t, `blk.${newIndex}.${m[2]}`));
  }

  const oldName = file.getString("general.name") ?? arch;
  const dropped = [...drop].sort((a, b) => a - b).join(", ");
  let kvs = setKv(file.kvs, countKey, nBlocks - drop.size); // keeps block_count's integer type
  kvs = setKv(kvs, "general.name", opts.name ?? `${oldName} (block${drop.size > 1 ? "s" : ""} ${dropped} removed)`, GgufType.STRING);
  return writeGguf(opts.out, { version: file.version as 2 | 3, kvs, tensors });
}
