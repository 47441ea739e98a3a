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
import path from "node:path";
import { BRIDGE_OPS, callOp, type BridgeApi, type BridgeEvent } from "../shared/bridge.js";
import { appResponse } from "./appProtocol.js";
import { messageOf } from "./engineProtocol.js";
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
  on(
    event: "will-navigate" | "will-frame-navigate" | "will-redirect" | "will-attach-webview",
    listener: (event: { preventDefault(): void }) => void,
  ): unknown;
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
}

export interface SessionLike {
  setPermissionRequestHandler(handler: (webContents: unknown, permission: string, callback: (granted: boolean) => void) => void): void;
  setPermissionCheckHandler(handler: (webContents: unknown, permission: string) => boolean): void;
  setDevicePermissionHandler(handler: () => boolean): void;
}

/** Why a renderer process ended (Electron's RenderProcessGoneDetails). */
export interface RenderGoneDetails {
  reason: string;
  exitCode: number;
}

export interface WindowLike {
  readonly webContents: WebContentsLike & {
    on(event: "render-process-gone", listener: (event: { preventDefault(): void }, details?: RenderGoneDetails) => void): unknown;
  };
  loadURL(url: string): Promise<void>;
  once(event: "ready-to-show", listener: () => void): unknown;
  show(): void;
  focus(): void;
  isMinimized(): boolean;
  restore(): void;
  isDestroyed(): boolean;
}

export type WindowOptions = ReturnType<typeof windowOptions>;

/** Electron, as far as the shell uses it (main.ts adapts the real modules to this). */
export interface ShellPlatform {
  /** false: another instance holds the data folder (it is told, and focuses its window) */
  requestSingleInstanceLock(): boolean;
  onSecondInstance(listener: () => void): void;
  enableSandbox(): void;
  whenReady(): Promise<unknown>;
  onWebContentsCreated(listener: (contents: WebContentsLike) => void): void;
  onAllWindowsClosed(listener: () => void): void;
  /** Cmd+Q, the Dock's Quit, app.quit(): the listener may preventDefault to finish closing first */
  onBeforeQuit(listener: (event: { preventDefault(): void }) => void): void;
  /** the default session; valid once ready */
  defaultSession(): SessionLike;
  /** serves the renderer's files on the app:// scheme (registered as privileged before ready) */
  handleAppProtocol(handler: (request: { url: string; method: string }) => Promise<Response>): void;
  createWindow(options: WindowOptions): WindowLike;
  handleIpc(channel: string, handler: (event: IpcInvokeEventLike, ...args: unknown[]) => Promise<unknown>): void;
  openExternal(url: string): void;
  /** a native error dialog (it works before the app is ready, and blocks until dismissed) */
  showErrorDialog(title: string, message: string): void;
  quit(): void;
}

export interface HostedService {
  api: BridgeApi;
  subscribe(listener: (event: BridgeEvent) => void): () => void;
  close(): Promise<void>;
}

export interface ShellOptions {
  /** the renderer's index.html; its folder is what app:// serves */
  rendererIndex: string;
  /** the URL the window shows, and the only page IPC answers (app://tandem/index.html) */
  appIndexUrl: string;
  preload: string;
  /**
   * Starts the engine (after the app is ready: it needs the user's data folder). The window is up
   * before this resolves; calls wait for it; a rejection is shown in a dialog and the app quits.
   */
  startService(): Promise<HostedService>;
  /** false in the packaged app: no DevTools (the default menu's Toggle Developer Tools does nothing) */
  devTools?: boolean;
  /** Operations the main process answers itself (the native file dialog), in place of the engine's. */
  overrides?(service: Promise<HostedService>): Partial<BridgeApi>;
  /** how long quitting waits for the engine to close (default 15 s) */
  closeTimeoutMs?: number;
}

/** The options of the app's window: the only place a BrowserWindow's options are made. */
export function windowOptions(preload: string, devTools = true) {
  return {
    width: 1280,
    height: 820,
    minWidth: 760,
    minHeight: 520,
    title: "Tandem",
    show: false,
    webPreferences: { ...SECURE_WEB_PREFERENCES, preload, ...(devTools ? {} : { devTools: false }) },
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

/** The whole shell: guards, window, engine, IPC, events, quitting. Returns the window once its page is
 *  loaded, or null when another instance is running (this one quits). */
export async function startShell(platform: ShellPlatform, opts: ShellOptions): Promise<WindowLike | null> {
  if (!platform.requestSingleInstanceLock()) {
    platform.quit(); // two engines on one data folder would overwrite each other's conversations
    return null;
  }
  platform.enableSandbox();
  platform.onWebContentsCreated((contents) => hardenWebContents(contents, (url) => platform.openExternal(url)));
  await platform.whenReady();
  hardenSession(platform.defaultSession());
  const rendererDir = path.dirname(opts.rendererIndex);
  platform.handleAppProtocol((request) => appResponse(request, rendererDir));

  // the window first: the engine starts (and loads its model) behind it; calls wait for it
  const win = platform.createWindow(windowOptions(opts.preload, opts.devTools ?? true));
  win.once("ready-to-show", () => win.show());
  const service = opts.startService();
  service.catch((err) => {
    platform.showErrorDialog("Tandem could not start", messageOf(err));
    platform.quit();
  });
  const api = { ...relayTo(service), ...opts.overrides?.(service) } as BridgeApi;
  registerBridgeIpc(platform, win, opts.appIndexUrl, api);
  let unsubscribe = () => {};
  void service.then(
    (s) =>
      (unsubscribe = s.subscribe((event) => {
        // pushed events go to the app's window only
        if (!win.isDestroyed()) win.webContents.send(EVENT_CHANNEL, event);
      })),
    () => undefined,
  );
  platform.onSecondInstance(() => {
    if (win.isDestroyed()) return;
    if (win.isMinimized()) win.restore();
    win.show();
    win.focus();
  });
  watchRenderer(platform, win, opts.appIndexUrl);
  handleQuit(platform, service, () => unsubscribe(), opts.closeTimeoutMs ?? 15_000);
  await win.loadURL(opts.appIndexUrl);
  return win;
}

/** The table, each call waiting for the engine to be up. */
function relayTo(service: Promise<HostedService>): BridgeApi {
  return Object.fromEntries(
    BRIDGE_OPS.map((op) => [op, async (arg: unknown) => callOp((await service).api, op, arg)]),
  ) as unknown as BridgeApi;
}

/** Quitting (the last window closed, Cmd+Q, the Dock) waits, bounded, for the engine to flush and close. */
function handleQuit(platform: ShellPlatform, service: Promise<HostedService>, unsubscribe: () => void, timeoutMs: number): void {
  let closing: Promise<void> | null = null;
  let closed = false;
  const closeThenQuit = () => {
    closing ??= (async () => {
      unsubscribe();
      const s = await service.catch(() => null);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([s?.close().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      closed = true;
      platform.quit();
    })();
    return closing;
  };
  platform.onAllWindowsClosed(() => void closeThenQuit());
  platform.onBeforeQuit((event) => {
    if (closed) return;
    event.preventDefault();
    void closeThenQuit();
  });
}

/** A renderer that crashed or was killed is reloaded (the engine and the conversations are untouched);
 *  if it keeps dying, the user is told and the app quits. */
function watchRenderer(platform: ShellPlatform, win: WindowLike, url: string): void {
  const crashes: number[] = [];
  win.webContents.on("render-process-gone", (_event, details = { reason: "unknown", exitCode: -1 }) => {
    if (details.reason === "clean-exit" || win.isDestroyed()) return;
    const now = Date.now();
    crashes.push(now);
    while (crashes.length && now - crashes[0] > 60_000) crashes.shift();
    if (crashes.length <= 3) {
      void win.loadURL(url).catch(() => undefined);
      return;
    }
    platform.showErrorDialog(
      "Tandem's window keeps stopping",
      `Its page ended (${details.reason}, exit code ${details.exitCode}) ${crashes.length} times in a minute. Your conversations are saved; Tandem will quit.`,
    );
    platform.quit();
  });
}
