/**
 * The Electron shell's wiring, with Electron passed in (main.ts hands over the real modules). Nothing
 * here imports `electron`, so test/app/electronSecurity.test.ts drives this very code with fake windows,
 * sessions, web contents and IPC events — no Electron binary needed — and sees every guard act:
 *
 *   - every window is created here, from SECURE_WEB_PREFERENCES (sandbox, context isolation, no Node);
 *   - every web contents, the window's and any other, can neither navigate nor open windows (http(s)
 *     links go to the user's browser, nothing else is opened) nor attach a webview;
 *   - every permission request and check is denied, device access (HID, serial, USB) too;
 *   - the one IPC channel answers only the app's own page in the window's top frame.
 */
import { callOp, type BridgeApi, type BridgeEvent } from "../shared/bridge.js";
import { CALL_CHANNEL, EVENT_CHANNEL } from "./channels.js";
import { isTrustedSender, parseIpcCall, SECURE_WEB_PREFERENCES } from "./security.js";

/** What the shell needs of a frame (Electron's WebFrameMain). */
export interface FrameLike {
  readonly url: string;
  readonly parent: unknown;
}

/** An `ipcMain.handle` event: who sent the call. */
export interface IpcInvokeEventLike {
  readonly sender: unknown;
  readonly senderFrame: FrameLike | null;
}

/** What the shell needs of a web contents (Electron's WebContents). */
export interface WebContentsLike {
  setWindowOpenHandler(handler: (details: { url: string }) => { action: "deny" }): void;
  on(event: "will-navigate" | "will-frame-navigate" | "will-redirect" | "will-attach-webview", listener: (event: { preventDefault(): void }) => void): unknown;
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
}

export interface SessionLike {
  setPermissionRequestHandler(handler: (webContents: unknown, permission: string, callback: (granted: boolean) => void) => void): void;
  setPermissionCheckHandler(handler: (webContents: unknown, permission: string) => boolean): void;
  setDevicePermissionHandler(handler: () => boolean): void;
}

export interface WindowLike {
  readonly webContents: WebContentsLike;
  loadFile(file: string): Promise<void>;
  once(event: "ready-to-show", listener: () => void): unknown;
  show(): void;
  isDestroyed(): boolean;
}

export type WindowOptions = ReturnType<typeof windowOptions>;

/** Electron, as far as the shell uses it (main.ts adapts the real modules to this). */
export interface ShellPlatform {
  enableSandbox(): void;
  whenReady(): Promise<unknown>;
  onWebContentsCreated(listener: (contents: WebContentsLike) => void): void;
  onAllWindowsClosed(listener: () => void): void;
  /** the default session; valid once ready */
  defaultSession(): SessionLike;
  createWindow(options: WindowOptions): WindowLike;
  handleIpc(channel: string, handler: (event: IpcInvokeEventLike, ...args: unknown[]) => Promise<unknown>): void;
  openExternal(url: string): void;
  quit(): void;
}

export interface HostedService {
  api: BridgeApi;
  subscribe(listener: (event: BridgeEvent) => void): () => void;
  close(): Promise<void>;
}

export interface ShellOptions {
  /** the renderer's index.html; the only page the window shows and the only caller IPC answers */
  rendererIndex: string;
  /** its file:// URL */
  appIndexUrl: string;
  preload: string;
  /** starts the engine (after the app is ready: it needs the user's data folder) */
  startService(): Promise<HostedService>;
}

/** The options of the app's window: the only place a BrowserWindow's options are made. */
export function windowOptions(preload: string) {
  return {
    width: 1280,
    height: 820,
    minWidth: 760,
    minHeight: 520,
    title: "Tandem",
    show: false,
    webPreferences: { ...SECURE_WEB_PREFERENCES, preload },
  };
}

/** No navigation, no new windows, no webviews. Links in answers open in the user's browser, if http(s). */
export function hardenWebContents(contents: WebContentsLike, openExternal: (url: string) => void): void {
  contents.setWindowOpenHandler(({ url }) => {
    // only web links leave the app; other schemes (file:, smb:, custom protocol handlers) can run
    // programs on some systems and are never handed to the OS
    if (isWebUrl(url)) openExternal(url);
    return { action: "deny" };
  });
  const block = (event: { preventDefault(): void }) => event.preventDefault();
  contents.on("will-navigate", block);
  contents.on("will-frame-navigate", block); // subframes too (the CSP allows none; belt and braces)
  contents.on("will-redirect", block);
  contents.on("will-attach-webview", block);
}

export function isWebUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === "https:" || u.protocol === "http:";
  } catch {
    return false;
  }
}

/** Camera, microphone, notifications, geolocation, clipboard, devices...: all denied. */
export function hardenSession(session: SessionLike): void {
  session.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  session.setPermissionCheckHandler(() => false);
  session.setDevicePermissionHandler(() => false);
}

/** Whether an IPC call comes from the app's own page, in the top frame of the app's window. */
export function isCallFromApp(event: IpcInvokeEventLike, win: WindowLike, appIndexUrl: string): boolean {
  const frame = event.senderFrame;
  return (
    event.sender === win.webContents && // not another window or web contents
    frame !== null && // a frame that navigated away or was destroyed meanwhile
    frame.parent === null && // not an iframe inside the page
    isTrustedSender(frame.url, appIndexUrl) // the page it shows is ours
  );
}

/** The one IPC channel: calls of the bridge's table, from the app's page only. */
export function registerBridgeIpc(platform: ShellPlatform, win: WindowLike, appIndexUrl: string, api: BridgeApi): void {
  platform.handleIpc(CALL_CHANNEL, async (event, op, arg) => {
    if (!isCallFromApp(event, win, appIndexUrl)) throw new Error("Refused: unknown sender");
    const call = parseIpcCall(op, arg);
    if (!call) throw new Error("Refused: malformed call");
    return callOp(api, call.op, call.arg);
  });
}

/** The whole shell: guards, engine, window, IPC, events. Returns the window once its page is loaded. */
export async function startShell(platform: ShellPlatform, opts: ShellOptions): Promise<WindowLike> {
  platform.enableSandbox();
  platform.onWebContentsCreated((contents) => hardenWebContents(contents, (url) => platform.openExternal(url)));
  await platform.whenReady();
  hardenSession(platform.defaultSession());

  const service = await opts.startService();
  const win = platform.createWindow(windowOptions(opts.preload));
  win.once("ready-to-show", () => win.show());
  registerBridgeIpc(platform, win, opts.appIndexUrl, service.api);
  const unsubscribe = service.subscribe((event) => {
    // pushed events go to the app's window only
    if (!win.isDestroyed()) win.webContents.send(EVENT_CHANNEL, event);
  });
  platform.onAllWindowsClosed(() => {
    unsubscribe();
    void service.close().finally(() => platform.quit());
  });
  await win.loadFile(opts.rendererIndex);
  return win;
}
