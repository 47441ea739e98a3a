/**
 * How the cloud server's shared context puts the work of many sessions into one decode — arranged so
 * that every session gets its own prediction.
 *
 * The bug this avoids (found by the soak run, node-llama-cpp 3.21.1 with its llama.cpp): when one
 * decode carries predictions of several sequences, llama.cpp may compute them in another order than
 * the batch's (a context with one KV stream per sequence splits the batch into "equal" ubatches of
 * consecutive sequence IDs) and records swaps that it applies lazily, on the first read of the logits
 * (`llama_context::output_reorder`, not thread-safe). node-llama-cpp then samples every sequence's
 * token at once on libuv worker threads, each reading the logits: the reads race with the swapping, and
 * sessions receive each other's tokens. Measured: 0.3–1.4% of predictions wrong under 64 busy
 * sessions, always in bursts where the tokens of one batch were shifted by a row or two.
 *
 * llama.cpp records no swaps when the outputs come out in batch order. This prioritization strategy
 * guarantees that: it orders each batch by ascending sequence ID, and lets a token whose logits are
 * wanted travel only alone (an item contributes the tokens before its first output, or that output
 * token by itself). With both, every ubatch is a run of consecutive IDs starting at the smallest one
 * with work left, and each output-bearing sequence has exactly one token in the batch, so outputs are
 * produced in ascending batch position. Steady-state decoding (one token per session per call) keeps
 * full batching; a longer delta spends one extra decode on its last token.
 */
import type { BatchItem, LlamaContext, PrioritizedBatchItem } from "node-llama-cpp";

type Strategy = (options: { items: readonly BatchItem[]; size: number }) => PrioritizedBatchItem[];

/** The internal queue entry node-llama-cpp builds each BatchItem from (same order, same `tokens` array). */
interface QueuedDecode {
  sequenceId: number;
  tokens: readonly number[];
}

/**
 * The strategy, bound to a context created later (the context is only known once created with it).
 * It needs each item's sequence ID, which node-llama-cpp's BatchItem does not carry: it is read from
 * the context's internal queue, which the items are built from in order. If that internal changes,
 * the strategy throws a clear error (every queued evaluation then fails) instead of guessing.
 */
export function orderedOutputsStrategy(context: () => LlamaContext | undefined): Strategy {
  return ({ items, size }) => {
    const ids = sequenceIdsOf(context(), items);
    const order = items.map((item, i) => ({ item, id: ids[i], cap: tokensBeforeOutput(item) })).sort((a, b) => a.id - b.id);
    const share = Math.max(1, Math.floor(size / order.length));
    let left = size;
    const amounts = order.map(({ cap }) => {
      const n = Math.min(cap, share, left);
      left -= n;
      return n;
    });
    for (let i = 0; i < order.length && left > 0; i++) {
      const more = Math.min(order[i].cap - amounts[i], left);
      amounts[i] += more;
      left -= more;
    }
    // an amount of 0 would be read as 1 by node-llama-cpp: leave such items out of this batch instead
    return order.flatMap(({ item }, i) => (amounts[i] > 0 ? [{ item, processAmount: amounts[i] }] : []));
  };
}

/** Tokens an item may contribute: those before its first output token, or that token alone. */
export function tokensBeforeOutput(item: BatchItem): number {
  const firstOutput = item.logits.findIndex((wanted, i) => wanted === true && i < item.tokens.length);
  if (firstOutput < 0) return item.tokens.length;
  return firstOutput === 0 ? 1 : firstOutput;
}

function sequenceIdsOf(context: LlamaContext | undefined, items: readonly BatchItem[]): number[] {
  // node-llama-cpp internals (3.21.1): LlamaContext._queuedDecodes, one per BatchItem, in order
  const queued = (context as unknown as { _queuedDecodes?: QueuedDecode[] } | undefined)?._queuedDecodes;
  if (!queued || queued.length !== items.length || items.some((item, i) => item.tokens !== queued[i].tokens)) {
    throw new Error(
      "cannot tell which sequence each batch item belongs to (node-llama-cpp internals changed): " +
        "cloud/batching.ts must be updated before several sessions can share a context safely",
    );
  }
  return queued.map((q) => q.sequenceId);
}
