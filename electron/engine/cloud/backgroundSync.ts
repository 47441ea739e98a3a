/**
 * Background sync: the decoder reports every committed token (`observe`), and the tokens go to the
 * server with /append while the SLM keeps writing — one request in flight at a time, the tokens made
 * meanwhile going in the next — so when a token is routed to the cloud the server has already read
 * the conversation and the call costs one LLM step plus the round trip, not a catch-up of the whole
 * delta. A call does not wait for an append still on its way: the server runs one session's requests
 * in arrival order, so the call builds on the append's tokens (and should it overtake the append, or
 * the append fail, the server answers out_of_sync and the call re-sends from what it holds).
 * The sync never decides a token's fate: a failed append only pauses it, and the call that follows
 * re-syncs (or fails) exactly as the blocking client would.
 */
import { PROTOCOL_LIMITS, AppendResponseSchema } from "../../../shared/protocol.js";
import { expectLength, type CloudHttp } from "./cloudHttp.js";
import type { CloudHealth } from "./callSupport.js";
import type { SessionMirror } from "./sessionMirror.js";

export const DEFAULT_SYNC_CHUNK = 4;

export class BackgroundSync {
  /** the decoder's committed history (a growing array) and how much of it to sync */
  private observed: readonly number[] = [];
  private observedLength = 0;
  /** the background append in flight, if any (it never rejects) */
  private syncing: Promise<void> | null = null;
  /** set by a failed background append; the next call that succeeds clears it */
  private paused = false;

  constructor(
    private readonly mirror: SessionMirror,
    private readonly http: CloudHttp,
    private readonly health: CloudHealth,
    private readonly deadlineMs: number,
    /** tokens to gather before an append (TandemClientOptions.syncChunk) */
    private readonly chunk = DEFAULT_SYNC_CHUNK,
  ) {}

  observe(history: readonly number[]): void {
    this.observed = history;
    this.observedLength = history.length;
    this.pump();
  }

  /** A call reached the server: it is in sync again, so the sync may go on. */
  resume(): void {
    this.paused = false;
  }

  /** The append in flight, if any, has ended. */
  async settled(): Promise<void> {
    await this.syncing;
  }

  /** Stops syncing (the client is closing) and waits for the append in flight. */
  async stop(): Promise<void> {
    this.observed = [];
    this.observedLength = 0;
    this.paused = false;
    await this.syncing;
  }

  /** Starts a background append of what the server lacks, unless one is running or it must not. */
  private pump(): void {
    const m = this.mirror;
    if (m.closed || this.syncing || m.callsInFlight.size > 0 || this.paused || !m.sessionId || !this.health.open) return;
    // runs after every token: compare in place, copy only when an append goes out
    const base = m.heldOf(this.observed, this.observedLength);
    if (this.observedLength - base < Math.max(1, this.chunk)) return;
    const target = this.observed.slice(0, this.observedLength);
    this.syncing = this.append(target, base).finally(() => {
      this.syncing = null;
      this.pump(); // tokens committed while that append was on its way go in the next one
    });
  }

  private async append(target: readonly number[], base: number): Promise<void> {
    const m = this.mirror;
    const signal = AbortSignal.timeout(this.deadlineMs + m.catchUpMs(target));
    let t0 = performance.now();
    const epoch = m.sending(base, false);
    m.appendInFlight = target.length - base <= PROTOCOL_LIMITS.maxDeltaTokens ? target : null;
    try {
      while (base < target.length) {
        const chunk = target.slice(base, base + PROTOCOL_LIMITS.maxDeltaTokens);
        const r = await this.http.call(m.path("append"), m.delta(target, base, chunk), signal, AppendResponseSchema, "append reply");
        expectLength(r.length, base + chunk.length);
        m.reading.learn(r.evaluated, performance.now() - t0);
        t0 = performance.now();
        base = r.length;
        m.confirm(epoch, target.slice(0, base));
      }
    } catch {
      // the next call finds out what is wrong (a lost session, an unreachable server) and deals with
      // it as the blocking client would; until then, don't send on every token into a failure
      this.paused = true;
    } finally {
      if (m.appendInFlight === target) m.appendInFlight = null;
    }
  }
}
