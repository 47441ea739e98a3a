/**
 * The main process's side of the engine: the engine host (engineHost.ts) runs in Electron's utility
 * process, and this relays the bridge's table to it and its events back, so the main process stays a
 * thin shell. If the engine dies (a native crash in llama.cpp, out of memory), the window is told, the
 * answer being written ends with an error (its tokens so far are in the conversation's journal), and a
 * new engine starts on the same data folder: the conversations are intact. Closing is bounded: the
 * engine flushes and releases its model, or is killed when it takes too long. No `electron` import:
 * main.ts passes `utilityProcess.fork`, tests a fake.
 */
import { BRIDGE_OPS, type BridgeApi, type BridgeEvent, type BridgeListener, type BridgeOp } from "../shared/bridge.js";
import { parseFromEngine, type EngineStartOptions, type FromEngine, type ToEngine } from "./engineProtocol.js";

/** Electron's UtilityProcess, as far as this uses it. */
export interface EngineChildLike {
  postMessage(message: ToEngine): void;
  on(event: "message", listener: (message: unknown) => void): unknown;
  on(event: "exit", listener: (code: number) => void): unknown;
  kill(): boolean;
}

export interface EngineProcessOptions {
  fork(): EngineChildLike;
  /** read at every (re)start: the saved cloud token may have changed since the last one */
  start: EngineStartOptions | (() => EngineStartOptions);
  /** the engine changed the cloud token: encrypt and save it (main.ts, engineSecrets.ts); a failure becomes a notice */
  onSecret?(token: string): Promise<void>;
  /** how long quitting waits for the engine to flush and exit before killing it (default 10 s) */
  closeTimeoutMs?: number;
  /** restarts allowed within `restartWindowMs` before giving up (default 3 in 60 s) */
  maxRestarts?: number;
  restartWindowMs?: number;
  /** the engine keeps dying: the main process shows a dialog */
  onGiveUp?(message: string): void;
}

interface Pending {
  child: EngineChildLike;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

type ActiveRequest = { requestId: string; conversationId: string; messageId: string };

export class EngineProcess {
  readonly api: BridgeApi;
  private readonly listeners = new Set<BridgeListener>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private child: EngineChildLike | null = null;
  /** the child once it said "ready"; rejected when it could not start */
  private ready!: Promise<EngineChildLike>;
  private active: ActiveRequest | null = null;
  private restarts: number[] = [];
  private closing: Promise<void> | null = null;
  private exited: (() => void) | null = null;
  private started = 0;

  constructor(private readonly opts: EngineProcessOptions) {
    this.api = Object.fromEntries(BRIDGE_OPS.map((op) => [op, (arg: object) => this.call(op, arg ?? {})])) as unknown as BridgeApi;
    this.spawn();
  }

  /** Resolves once the first engine answers calls (its model may still be loading); rejects if it cannot start. */
  whenReady(): Promise<void> {
    return this.ready.then(() => undefined);
  }

  subscribe(listener: BridgeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: BridgeEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // one broken listener must not stop the others
      }
    }
  }

  private spawn(): void {
    const child = this.opts.fork();
    this.child = child;
    const restart = this.started++ > 0;
    this.ready = new Promise<EngineChildLike>((resolve, reject) => {
      child.on("message", (raw) => {
        const m = parseFromEngine(raw);
        if (!m) return;
        if (m.kind === "ready") resolve(child);
        else if (m.kind === "failed") reject(new Error(`The engine could not start: ${m.error}`));
        else this.onMessage(child, m);
      });
      child.on("exit", (code) => {
        reject(new Error(`The engine stopped before it started (exit code ${code})`));
        this.onExit(child, code);
      });
    });
    this.ready.catch(() => undefined); // seen by callers of whenReady/call
    const { start } = this.opts;
    child.postMessage({ kind: "start", options: typeof start === "function" ? start() : start });
    if (restart)
      void this.ready.then(
        () => this.resync(),
        () => undefined,
      );
  }

  private onMessage(child: EngineChildLike, m: FromEngine): void {
    if (m.kind === "result") {
      const p = this.pending.get(m.id);
      if (!p || p.child !== child) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error)); // the engine's own message, nothing added
    } else if (m.kind === "event") {
      this.track(m.event);
      this.emit(m.event);
    } else if (m.kind === "closed") {
      if (this.closing) child.kill(); // flushed: nothing left to wait for
    } else if (m.kind === "secret") {
      void (this.opts.onSecret?.(m.token) ?? Promise.resolve()).catch((err: Error) =>
        this.emit({ type: "notice", message: `Could not save the cloud token in the keychain: ${err.message}` }),
      );
    }
  }

  /** Which answer is streaming: if the engine dies during it, the window must hear that it ended. */
  private track(e: BridgeEvent): void {
    if (e.type === "answer-start")
      this.active = { requestId: e.handle.requestId, conversationId: e.handle.conversationId, messageId: e.handle.messageId };
    else if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === this.active?.requestId) this.active = null;
  }

  private onExit(child: EngineChildLike, code: number): void {
    if (child !== this.child) return;
    this.child = null;
    const why = `The engine stopped unexpectedly (exit code ${code})`;
    for (const [id, p] of this.pending) {
      if (p.child !== child) continue;
      this.pending.delete(id);
      p.reject(new Error(this.closing ? "The app is closing" : `${why}; it is restarting, try again in a moment`));
    }
    if (this.closing) return this.exited?.();
    if (this.active) {
      const a = this.active;
      this.active = null;
      this.emit({ type: "answer-error", ...a, error: `${why} while answering; the answer so far is kept` });
    }
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < (this.opts.restartWindowMs ?? 60_000));
    if (this.restarts.length >= (this.opts.maxRestarts ?? 3)) {
      const message = `${why}, again: it stopped ${this.restarts.length + 1} times in a row, so it is not restarted. Your conversations are saved; quit and open Tandem again.`;
      this.ready = Promise.reject(new Error(message));
      this.ready.catch(() => undefined);
      this.emit({ type: "notice", message });
      this.opts.onGiveUp?.(message);
      return;
    }
    this.restarts.push(now);
    this.emit({ type: "notice", message: `${why}; restarting it. Your conversations are kept.` });
    this.spawn();
  }

  /** After a restart: the window gets the new engine's state (the conversations it reads back from disk). */
  private async resync(): Promise<void> {
    try {
      const s = await this.api.snapshot({});
      this.emit({ type: "tau", tau: s.tau });
      this.emit({ type: "conversations", conversations: s.conversations });
      this.emit({ type: "models", models: s.models });
      this.emit({ type: "cloud", cloud: s.cloud });
      this.emit({ type: "stats", stats: s.stats });
    } catch {
      // it died again: onExit says so
    }
  }

  private async call(op: BridgeOp, arg: object): Promise<unknown> {
    if (this.closing) throw new Error("The app is closing");
    const child = await this.ready;
    if (child !== this.child) throw new Error("The engine stopped unexpectedly; it is restarting, try again in a moment");
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { child, resolve, reject });
      child.postMessage({ kind: "call", id, op, arg });
    });
  }

  /** Asks the engine to flush and exit; kills it after `closeTimeoutMs`. Resolves once it is gone. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const child = this.child;
      if (!child) return;
      const gone = new Promise<void>((resolve) => (this.exited = resolve));
      child.postMessage({ kind: "close" });
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.opts.closeTimeoutMs ?? 10_000)));
      if (await Promise.race([gone.then(() => false), timedOut])) {
        child.kill();
        await Promise.race([gone, new Promise((r) => setTimeout(r, 1000))]);
      }
      clearTimeout(timer);
      this.listeners.clear();
    })();
    return this.closing;
  }
}
