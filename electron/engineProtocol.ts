/**
 * Messages between the main process and the engine host (electron/engineHost.ts, in Electron's utility
 * process). The bridge's table (shared/bridge.ts) crosses unchanged: a call is an operation name and its
 * argument, a result is a value or the engine's own error message, and pushed events are relayed as is.
 * Both sides check what they receive: a malformed message is dropped, never dispatched.
 */
import { isBridgeOp, type BridgeEvent, type BridgeOp } from "../shared/bridge.js";

/** What the engine host needs to start the service (main.ts fills it from the app's folders). */
export interface EngineStartOptions {
  dataDir: string;
  modelsDir: string;
  slm: string | null;
  cloud: { kind: "tandem"; url: string; token: string } | null;
  paceMs?: number;
  maxTokens?: number;
  /**
   * The saved cloud token, decrypted by the main process with Electron's `safeStorage` (the utility
   * process has none): the engine keeps it in memory and sends changes back as `secret` messages.
   * Absent: the OS offers no encryption, and the engine keeps the token in its own 0600 file.
   */
  secret?: { token: string | null };
}

export type ToEngine =
  { kind: "start"; options: EngineStartOptions } | { kind: "call"; id: number; op: BridgeOp; arg: object } | { kind: "close" };

export type FromEngine =
  /** the service answers calls (its models may still be loading) */
  | { kind: "ready" }
  /** the service could not start at all (an unreadable data folder) */
  | { kind: "failed"; error: string }
  | { kind: "result"; id: number; ok: true; result: unknown }
  | { kind: "result"; id: number; ok: false; error: string }
  | { kind: "event"; event: BridgeEvent }
  /** service.close() finished: conversations flushed, the model released */
  | { kind: "closed" }
  /** the cloud token changed ("" removes it): the main process encrypts and saves it (EngineStartOptions.secret) */
  | { kind: "secret"; token: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export function parseToEngine(v: unknown): ToEngine | null {
  if (!isObject(v)) return null;
  if (v.kind === "close") return { kind: "close" };
  if (v.kind === "start" && isObject(v.options) && typeof v.options.dataDir === "string" && typeof v.options.modelsDir === "string") {
    return { kind: "start", options: v.options as unknown as EngineStartOptions };
  }
  if (v.kind === "call" && Number.isSafeInteger(v.id) && isBridgeOp(v.op) && isObject(v.arg))
    return { kind: "call", id: v.id as number, op: v.op, arg: v.arg };
  return null;
}

export function parseFromEngine(v: unknown): FromEngine | null {
  if (!isObject(v)) return null;
  switch (v.kind) {
    case "ready":
    case "closed":
      return { kind: v.kind };
    case "failed":
      return typeof v.error === "string" ? { kind: "failed", error: v.error } : null;
    case "secret":
      return typeof v.token === "string" && v.token.length <= 4096 ? { kind: "secret", token: v.token } : null;
    case "event":
      return isObject(v.event) && typeof v.event.type === "string" ? { kind: "event", event: v.event as unknown as BridgeEvent } : null;
    case "result":
      if (!Number.isSafeInteger(v.id)) return null;
      if (v.ok === true) return { kind: "result", id: v.id as number, ok: true, result: v.result };
      return v.ok === false && typeof v.error === "string" ? { kind: "result", id: v.id as number, ok: false, error: v.error } : null;
    default:
      return null;
  }
}

/** An error's own message, as the UI should show it (not Error's name or a stack). */
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
