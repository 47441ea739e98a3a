/**
 * The Electron shell's guards, exercised without the Electron binary: electron/shell.ts (all of the
 * shell's wiring; main.ts only hands it Electron's modules) is started with fake windows, sessions,
 * web contents and IPC events, and each guard is made to act: windows' webPreferences, navigation and
 * new windows, permissions, and IPC calls from the app's page versus other windows, iframes, other
 * pages. The preload runs against a mocked `electron` module. The CSP is checked as written and in the
 * built page (Chromium enforcing it: e2e/browser.spec.ts).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { CALL_CHANNEL, EVENT_CHANNEL } from "../../electron/channels.js";
import { isTrustedSender, parseIpcCall, SECURE_WEB_PREFERENCES } from "../../electron/security.js";
import {
  startShell,
  type FrameLike,
  type HostedService,
  type IpcInvokeEventLike,
  type SessionLike,
  type ShellPlatform,
  type WebContentsLike,
  type WindowLike,
  type WindowOptions,
} from "../../electron/shell.js";
import { BRIDGE_OPS, type BridgeApi, type BridgeEvent } from "../../shared/bridge.js";
import { CONTENT_SECURITY_POLICY } from "../../web/server.js";
import { repoRoot } from "../helpers/shared.js";

// ---------------------------------------------------------------------------------------------------
// Fakes: they record what the shell registers, so the test can fire events at the real handlers

type Listener = (event: { preventDefault(): void }) => void;

class FakeContents implements WebContentsLike {
  openHandler: ((d: { url: string }) => { action: "deny" }) | null = null;
  readonly listeners = new Map<string, Listener[]>();
  readonly sent: unknown[][] = [];
  destroyed = false;
  setWindowOpenHandler(h: (d: { url: string }) => { action: "deny" }) {
    this.openHandler = h;
  }
  on(event: string, l: Listener) {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), l]);
    return this;
  }
  send(channel: string, ...args: unknown[]) {
    this.sent.push([channel, ...args]);
  }
  isDestroyed() {
    return this.destroyed;
  }
  /** Fires `event` as Electron would; returns whether a handler prevented it. */
  fire(event: string): boolean {
    let prevented = false;
    for (const l of this.listeners.get(event) ?? []) l({ preventDefault: () => (prevented = true) });
    return prevented;
  }
}

class FakeWindow implements WindowLike {
  readonly webContents = new FakeContents();
  loaded: string | null = null;
  shown = false;
  constructor(readonly options: WindowOptions) {}
  async loadURL(url: string) {
    this.loaded = url;
  }
  once(_e: "ready-to-show", l: () => void) {
    l();
    return this;
  }
  show() {
    this.shown = true;
  }
  focus() {}
  isMinimized() {
    return false;
  }
  restore() {}
  isDestroyed() {
    return this.webContents.destroyed;
  }
}

const appIndex = "/Applications/Tandem.app/Contents/Resources/app.asar/dist/renderer/index.html";
const appIndexUrl = `file://${appIndex}`;

function harness() {
  const calls: { op: string; arg: unknown }[] = [];
  // a table built from the run-time list of operations: Object.fromEntries cannot carry each
  // operation's own argument and result types, which the fake does not need (it records and echoes)
  const api = Object.fromEntries(
    BRIDGE_OPS.map((op) => [
      op,
      async (arg: unknown) => {
        calls.push({ op, arg });
        return { ok: op };
      },
    ]),
  ) as unknown as BridgeApi;
  const serviceListeners = new Set<(e: BridgeEvent) => void>();
  const service: HostedService & { closed: boolean } = {
    api,
    closed: false,
    subscribe: (l) => (serviceListeners.add(l), () => serviceListeners.delete(l)),
    async close() {
      this.closed = true;
    },
  };
  const rec = {
    sandbox: false,
    ready: false,
    windows: [] as FakeWindow[],
    contentsCreated: [] as ((c: WebContentsLike) => void)[],
    allClosed: [] as (() => void)[],
    ipc: new Map<string, (e: IpcInvokeEventLike, ...args: unknown[]) => Promise<unknown>>(),
    external: [] as string[],
    quit: false,
    permissionRequest: null as Parameters<SessionLike["setPermissionRequestHandler"]>[0] | null,
    permissionCheck: null as Parameters<SessionLike["setPermissionCheckHandler"]>[0] | null,
    devicePermission: null as Parameters<SessionLike["setDevicePermissionHandler"]>[0] | null,
  };
  const platform: ShellPlatform = {
    requestSingleInstanceLock: () => true,
    onSecondInstance: () => {},
    onBeforeQuit: () => {},
    handleAppProtocol: () => {},
    showErrorDialog: () => {},
    enableSandbox: () => void (rec.sandbox = true),
    whenReady: async () => void (rec.ready = true),
    onWebContentsCreated: (l) => void rec.contentsCreated.push(l),
    onAllWindowsClosed: (l) => void rec.allClosed.push(l),
    defaultSession: () => {
      // the session exists only once the app is ready
      expect(rec.ready).toBe(true);
      return {
        setPermissionRequestHandler: (h) => void (rec.permissionRequest = h),
        setPermissionCheckHandler: (h) => void (rec.permissionCheck = h),
        setDevicePermissionHandler: (h) => void (rec.devicePermission = h),
      };
    },
    createWindow: (options) => {
      const w = new FakeWindow(options);
      rec.windows.push(w);
      return w;
    },
    handleIpc: (channel, handler) => void rec.ipc.set(channel, handler),
    openExternal: (url) => void rec.external.push(url),
    quit: () => void (rec.quit = true),
  };
  return { platform, rec, calls, service, serviceListeners };
}

type Harness = ReturnType<typeof harness>;
let h: Harness;
let win: FakeWindow;

beforeEach(async () => {
  h = harness();
  win = (await startShell(h.platform, {
    rendererIndex: appIndex,
    appIndexUrl,
    preload: "/app/preload.cjs",
    startService: async () => h.service,
  })) as FakeWindow;
});

/** An IPC invoke as Electron delivers it. */
const invoke = (event: IpcInvokeEventLike, op: unknown, arg: unknown) => h.rec.ipc.get(CALL_CHANNEL)!(event, op, arg);
const topFrame = (url = appIndexUrl): FrameLike => ({ url, parent: null });

describe("Electron shell: windows", () => {
  it("the one window is created from the secure webPreferences, shows our page, and nothing else makes windows", () => {
    expect(h.rec.sandbox).toBe(true); // app.enableSandbox(): every renderer sandboxed, whatever its options
    expect(h.rec.windows).toHaveLength(1);
    const prefs = win.options.webPreferences;
    expect(prefs).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
    });
    expect(prefs).toEqual({ ...SECURE_WEB_PREFERENCES, preload: "/app/preload.cjs" });
    expect(win.loaded).toBe(appIndexUrl); // the page, by its URL (app:// in the app: electronBoot.test.ts)
    expect(win.shown).toBe(true);
  });

  it("no BrowserWindow is constructed anywhere but through the shell's createWindow", () => {
    // the shell cannot watch windows created behind its back: make sure the source has none
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
        d.isDirectory() ? files(path.join(dir, d.name)) : d.name.endsWith(".ts") ? [path.join(dir, d.name)] : [],
      );
    const makers = [
      ...files(path.join(repoRoot, "electron")),
      ...files(path.join(repoRoot, "web")),
      ...files(path.join(repoRoot, "renderer")),
    ].filter((f) => /new BrowserWindow\(|new BrowserView\(|new WebContentsView\(/.test(readFileSync(f, "utf8")));
    expect(makers.map((f) => path.relative(repoRoot, f))).toEqual(["electron/main.ts"]);
    expect(readFileSync(path.join(repoRoot, "electron", "main.ts"), "utf8")).toMatch(
      /createWindow: \(options\) => new BrowserWindow\(options\),/,
    );
  });
});

describe("Electron shell: navigation and new windows", () => {
  // the guard is installed on every web contents Electron creates: the window's, devtools', any other
  const contents = () => {
    const c = new FakeContents();
    for (const l of h.rec.contentsCreated) l(c);
    return c;
  };

  it.each(["will-navigate", "will-frame-navigate", "will-redirect", "will-attach-webview"])("%s is prevented", (event) => {
    expect(contents().fire(event)).toBe(true);
  });

  it("window.open / target=_blank is denied; only http(s) links are handed to the user's browser", () => {
    const c = contents();
    const urls = [
      "https://example.org/page",
      "http://example.org/",
      "javascript:alert(1)",
      "file:///etc/passwd",
      "smb://attacker/share",
      "ms-msdt:/id PCWDiagnostic",
      "tandem-evil://x",
      "data:text/html,<script>alert(1)</script>",
      "not a url",
    ];
    for (const url of urls) expect(c.openHandler!({ url }), url).toEqual({ action: "deny" });
    expect(h.rec.external).toEqual(["https://example.org/page", "http://example.org/"]);
  });
});

describe("Electron shell: permissions", () => {
  const requested = [
    "media",
    "geolocation",
    "notifications",
    "clipboard-read",
    "clipboard-sanitized-write",
    "display-capture",
    "fullscreen",
    "idle-detection",
    "midi",
    "midiSysex",
    "pointerLock",
    "keyboardLock",
    "openExternal",
    "storage-access",
    "window-management",
    "fileSystem",
    "unknown",
  ];

  it.each(requested)("a %s request is denied", (permission) => {
    let granted: boolean | undefined;
    h.rec.permissionRequest!(win.webContents, permission, (g) => (granted = g));
    expect(granted).toBe(false);
  });

  it("permission checks and device access (HID, serial, USB) are denied", () => {
    for (const p of [...requested, "hid", "serial", "usb"]) expect(h.rec.permissionCheck!(win.webContents, p), p).toBe(false);
    expect(h.rec.devicePermission!()).toBe(false);
  });
});

describe("Electron shell: IPC", () => {
  it("a call from the app's page in the window's top frame reaches the engine", async () => {
    await expect(invoke({ sender: win.webContents, senderFrame: topFrame() }, "setTau", { tau: 0.3 })).resolves.toEqual({ ok: "setTau" });
    await expect(invoke({ sender: win.webContents, senderFrame: topFrame(appIndexUrl + "#/chat") }, "stats", {})).resolves.toEqual({
      ok: "stats",
    });
    expect(h.calls).toEqual([
      { op: "setTau", arg: { tau: 0.3 } },
      { op: "stats", arg: {} },
    ]);
  });

  const foreign: [string, () => IpcInvokeEventLike][] = [
    ["another window's web contents", () => ({ sender: new FakeContents(), senderFrame: topFrame() })],
    ["an iframe inside the app's page", () => ({ sender: win.webContents, senderFrame: { url: appIndexUrl, parent: topFrame() } })],
    [
      "an iframe showing another site",
      () => ({ sender: win.webContents, senderFrame: { url: "https://evil.example/", parent: topFrame() } }),
    ],
    [
      "the window after navigating to a web site",
      () => ({ sender: win.webContents, senderFrame: topFrame("https://evil.example/dist/renderer/index.html") }),
    ],
    ["another local file", () => ({ sender: win.webContents, senderFrame: topFrame("file:///tmp/index.html") })],
    ["a data: URL", () => ({ sender: win.webContents, senderFrame: topFrame("data:text/html,<script>tandem.send()</script>") })],
    ["a frame already destroyed", () => ({ sender: win.webContents, senderFrame: null })],
    ["no sender at all", () => ({ sender: undefined, senderFrame: topFrame() })],
  ];

  it.each(foreign)("a call from %s is refused and never reaches the engine", async (_what, event) => {
    await expect(invoke(event(), "send", { requestId: "r", conversationId: "c", text: "hi" })).rejects.toThrow("Refused: unknown sender");
    expect(h.calls).toEqual([]);
  });

  it("a call outside the table, or with a non-object argument, is refused even from the app", async () => {
    const app = { sender: win.webContents, senderFrame: topFrame() };
    for (const [op, arg] of [
      ["openExternal", {}],
      ["__proto__", {}],
      ["constructor", {}],
      ["send", "x"],
      ["send", null],
      ["send", [1]],
    ] as const) {
      await expect(invoke(app, op, arg), String(op)).rejects.toThrow("Refused: malformed call");
    }
    expect(h.calls).toEqual([]);
  });

  it("pushed events go to the app's window only, and stop when it is gone; closing it closes the engine", async () => {
    const event: BridgeEvent = { type: "tau", tau: 0.4 };
    for (const l of h.serviceListeners) l(event);
    expect(win.webContents.sent).toEqual([[EVENT_CHANNEL, event]]);
    win.webContents.destroyed = true;
    for (const l of h.serviceListeners) l(event);
    expect(win.webContents.sent).toHaveLength(1);
    for (const l of h.rec.allClosed) l();
    await vi.waitFor(() => expect(h.rec.quit).toBe(true));
    expect(h.service.closed).toBe(true);
    expect(h.serviceListeners.size).toBe(0);
  });

  it("isTrustedSender and parseIpcCall on their own", () => {
    expect(isTrustedSender(appIndexUrl, appIndexUrl)).toBe(true);
    expect(isTrustedSender(appIndexUrl + "?x#y", appIndexUrl)).toBe(true);
    expect(isTrustedSender("file:///Applications/Tandem.app/Contents/Resources/app.asar/dist/renderer/other.html", appIndexUrl)).toBe(
      false,
    );
    expect(isTrustedSender(undefined, appIndexUrl)).toBe(false);
    expect(isTrustedSender("not a url", appIndexUrl)).toBe(false);
    expect(parseIpcCall("send", { text: "x" })).toEqual({ op: "send", arg: { text: "x" } });
    expect(parseIpcCall("openExternal", {})).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------------
// The preload, run against a mocked `electron` (the real one cannot load without its binary)

const exposed: Record<string, unknown> = {};
const invoked: unknown[][] = [];
const rendererListeners = new Map<string, ((e: unknown, ...a: unknown[]) => void)[]>();
vi.mock("electron", () => ({
  contextBridge: { exposeInMainWorld: (key: string, value: unknown) => void (exposed[key] = value) },
  ipcRenderer: {
    invoke: async (...args: unknown[]) => {
      invoked.push(args);
      // how Electron rejects an invoke whose handler threw
      if ((args[2] as { fail?: string } | undefined)?.fail)
        throw new Error(`Error invoking remote method '${CALL_CHANNEL}': Error: ${(args[2] as { fail: string }).fail}`);
    },
    on: (ch: string, l: (e: unknown, ...a: unknown[]) => void) => void rendererListeners.set(ch, [...(rendererListeners.get(ch) ?? []), l]),
    removeListener: (ch: string, l: (e: unknown, ...a: unknown[]) => void) =>
      void rendererListeners.set(
        ch,
        (rendererListeners.get(ch) ?? []).filter((x) => x !== l),
      ),
  },
}));

describe("Electron preload", () => {
  it("exposes one object: the bridge's operations and subscribe, nothing else (no ipcRenderer, no Node)", async () => {
    await import("../../electron/preload.js");
    expect(Object.keys(exposed)).toEqual(["tandem"]);
    const bridge = exposed.tandem as Record<string, unknown>;
    expect(Object.keys(bridge).sort()).toEqual([...BRIDGE_OPS, "subscribe"].sort());
    for (const k of Object.keys(bridge)) expect(typeof bridge[k], k).toBe("function");
  });

  it("each operation is an invoke of the one call channel; events reach the page without Electron's event object", async () => {
    await import("../../electron/preload.js");
    const bridge = exposed.tandem as {
      setTau(a: unknown): Promise<unknown>;
      stats(a?: unknown): Promise<unknown>;
      subscribe(l: (e: unknown) => void): () => void;
    };
    await bridge.setTau({ tau: 0.2 });
    await bridge.stats();
    expect(invoked.slice(-2)).toEqual([
      [CALL_CHANNEL, "setTau", { tau: 0.2 }],
      [CALL_CHANNEL, "stats", {}],
    ]);
    const got: unknown[][] = [];
    const off = bridge.subscribe((...args) => got.push(args));
    const ipcEvent = { sender: { send() {} }, senderFrame: {} }; // what Electron passes: must not leak to the page
    for (const l of rendererListeners.get(EVENT_CHANNEL)!) l(ipcEvent, { type: "tau", tau: 0.2 });
    expect(got).toEqual([[{ type: "tau", tau: 0.2 }]]);
    off();
    expect(rendererListeners.get(EVENT_CHANNEL)).toEqual([]);
  });

  it("an engine error reaches the page as the engine's own message, not Electron's wrapping", async () => {
    await import("../../electron/preload.js");
    const bridge = exposed.tandem as { stats(a: unknown): Promise<unknown> };
    await expect(bridge.stats({ fail: "No conversation abc" })).rejects.toThrow(/^No conversation abc$/);
  });
});

// ---------------------------------------------------------------------------------------------------
// The CSP: the Electron window loads from file:// (no headers), so the page carries it

function cspOf(html: string): Map<string, string[]> {
  const m = /<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]+)"/.exec(html);
  expect(m, "the page has a CSP meta tag").not.toBeNull();
  return parseCsp(m![1]);
}

function parseCsp(policy: string): Map<string, string[]> {
  return new Map(
    policy
      .split(";")
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...sources]) => [name, sources]),
  );
}

describe("Content Security Policy", () => {
  const pages = [path.join(repoRoot, "renderer", "index.html"), path.join(repoRoot, "dist", "renderer", "index.html")].filter((p) =>
    existsSync(p),
  );

  it.each(pages.map((p) => [path.relative(repoRoot, p), p]))(
    "%s: scripts only from the app, nothing inline, nothing from elsewhere",
    (_name, page) => {
      const csp = cspOf(readFileSync(page, "utf8"));
      expect(csp.get("default-src")).toEqual(["'none'"]); // everything not listed: nothing (frames, objects, media, workers)
      expect(csp.get("script-src")).toEqual(["'self'"]);
      expect(csp.get("base-uri")).toEqual(["'none'"]);
      expect(csp.get("form-action")).toEqual(["'none'"]);
      for (const [name, sources] of csp) {
        // no inline code, no eval, no wildcard, no other host; data: only for images
        expect(
          sources.filter((s) => !["'self'", "'none'"].includes(s) && !(name === "img-src" && s === "data:")),
          name,
        ).toEqual([]);
      }
      for (const d of ["frame-src", "child-src", "object-src", "worker-src"])
        expect(csp.has(d), `${d} falls back to default-src 'none'`).toBe(false);
      // the page itself has no inline script or handler the CSP would have to allow
      expect(readFileSync(page, "utf8")).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|\son\w+=/i);
    },
  );

  it("browser mode sends the same policy as a header (plus frame-ancestors, which a meta tag cannot carry)", () => {
    const header = parseCsp(CONTENT_SECURITY_POLICY);
    const meta = cspOf(readFileSync(path.join(repoRoot, "renderer", "index.html"), "utf8"));
    expect(header.get("frame-ancestors")).toEqual(["'none'"]);
    header.delete("frame-ancestors");
    expect(header).toEqual(meta);
  });
});
