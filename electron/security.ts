/**
 * The window's security settings and the checks the main process applies, kept free of `electron`
 * imports so a test can assert them without the Electron binary.
 */
import { isBridgeOp, type BridgeOp } from "../shared/bridge.js";

/** webPreferences for the one window: the page is untrusted (it renders model output). */
export const SECURE_WEB_PREFERENCES = {
  contextIsolation: true,
  sandbox: true,
  nodeIntegration: false,
  nodeIntegrationInWorker: false,
  nodeIntegrationInSubFrames: false,
  webSecurity: true,
  allowRunningInsecureContent: false,
  webviewTag: false,
  navigateOnDragDrop: false,
  spellcheck: false,
} as const;

/** Only the app's own page (loaded from its files) may call the engine. */
export function isTrustedSender(frameUrl: string | undefined, appIndexUrl: string): boolean {
  if (!frameUrl) return false;
  try {
    const u = new URL(frameUrl);
    const app = new URL(appIndexUrl);
    return u.protocol === app.protocol && u.pathname === app.pathname && u.host === app.host;
  } catch {
    return false;
  }
}

/** Validates an IPC call's shape before dispatch. */
export function parseIpcCall(op: unknown, arg: unknown): { op: BridgeOp; arg: object } | null {
  if (!isBridgeOp(op)) return null;
  if (typeof arg !== "object" || arg === null || Array.isArray(arg)) return null;
  return { op, arg };
}
