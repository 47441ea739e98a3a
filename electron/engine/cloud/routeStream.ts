/**
 * The device's end of a /route stream (RouteRequest in shared/protocol.ts): the positions a cloud's
 * SLM replica decided, as they arrive. The decoder reads them by offset from the stream's first
 * position and verifies each against its own tokens (electron/engine/decoding/replicaSource.ts); the
 * client fills them in (routeReader.ts).
 */
import { CloudCallError } from "./peer.js";

export interface RouteEntry {
  tokenId: number;
  /** the replica routed this position: `tokenId` is the LLM's greedy token after the stream's tokens before it */
  routed: boolean;
}

export type RouteWait =
  | { kind: "entry"; entry: RouteEntry }
  /** no entry there: the stream ended (`error` null for a normal end) */
  | { kind: "ended"; error: CloudCallError | null }
  | { kind: "timeout"; error: CloudCallError }
  | { kind: "aborted" };

export class RouteStream {
  readonly entries: RouteEntry[] = [];
  /** set when no more entries will come: null for a normal end, the failure otherwise */
  private endedWith: CloudCallError | null | undefined = undefined;
  private wake: (() => void)[] = [];
  private readonly controller = new AbortController();

  constructor(
    private readonly deadlineMs: number,
    /** more time for the first position: the server's reading of the tokens it has not seen yet (the client's catch-up allowance, readingSpeed.ts) */
    private readonly catchUpMs = 0,
  ) {}

  /** aborts the request (what the client reads the stream with) */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  push(entry: RouteEntry): void {
    if (this.ended) return;
    this.entries.push(entry);
    this.notify();
  }

  end(error: CloudCallError | null = null): void {
    if (this.ended) return;
    this.endedWith = error;
    this.notify();
  }

  /** why the decoder cancelled it, when that was a failure (a position that came too late) */
  cancelReason: CloudCallError | null = null;

  /** Stops the stream: the server ends it when the connection goes. */
  cancel(reason: CloudCallError | null = null): void {
    this.cancelReason ??= reason;
    this.end(reason);
    this.controller.abort();
  }

  /**
   * Waits for the entry at `offset` (0 = the first position), at most the client's deadline from now
   * (a call's deadline: the chat never waits longer on the network for one token).
   */
  async at(offset: number, signal?: AbortSignal): Promise<RouteWait> {
    const allowed = this.deadlineMs + (this.entries.length === 0 ? this.catchUpMs : 0);
    const deadline = performance.now() + allowed;
    for (;;) {
      if (signal?.aborted) return { kind: "aborted" };
      const entry = this.entries[offset];
      if (entry) return { kind: "entry", entry };
      if (this.endedWith !== undefined) return { kind: "ended", error: this.endedWith };
      const left = deadline - performance.now();
      if (left <= 0)
        return { kind: "timeout", error: new CloudCallError("timeout", `no answer from the cloud within ${Math.round(allowed)} ms`) };
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, left);
        signal?.addEventListener("abort", done, { once: true });
        this.wake.push(done);
      });
    }
  }

  private notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const w of waiting) w();
  }
}
