/**
 * A small fake of the `electron` module for the boot test (test/app/electronBoot.test.ts): the built
 * main process runs in plain Node against it. It reports what the app does to the test over Node's IPC
 * channel ({ev: ...}) and takes the test's commands ({cmd: ...}): IPC calls from chosen senders, app
 * events (quit, a second instance, a crashed page), an engine crash. utilityProcess.fork runs the real
 * engine host in a real Node child process (fakeParentPort.mjs gives it Electron's parentPort).
 */
import { fork } from "node:child_process";
import { EventEmitter } from "node:events";
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

const report = (ev) => process.send?.(ev);
const parentPortShim = new URL("./fakeParentPort.mjs", import.meta.url).href;

// ---------------------------------------------------------------------------------------------------
// app

const paths = { appData: process.env.FAKE_APPDATA ?? "/nonexistent" };
let lockFile = null;
let quitting = false;

class FakeApp extends EventEmitter {
  isPackaged = process.env.FAKE_PACKAGED === "1";
  name = "Electron";
  commandLine = {
    hasSwitch: (s) => process.argv.some((a) => a === `--${s}` || a.startsWith(`--${s}=`)),
    getSwitchValue: (s) => process.argv.find((a) => a.startsWith(`--${s}=`))?.slice(s.length + 3) ?? "",
  };
  setName(n) {
    this.name = n;
  }
  getName() {
    return this.name;
  }
  setPath(name, p) {
    paths[name] = p;
    report({ ev: "setPath", name, path: p });
  }
  getPath(name) {
    if (!paths[name]) throw new Error(`fake app.getPath: no ${name}`);
    return paths[name];
  }
  enableSandbox() {
    report({ ev: "sandbox" });
  }
  whenReady() {
    return new Promise((r) => setImmediate(() => (this.emit("ready"), r())));
  }
  /** Electron's lock is per userData: a file there, created exclusively, stands in for it. */
  requestSingleInstanceLock() {
    mkdirSync(paths.userData, { recursive: true });
    const file = path.join(paths.userData, ".fake-singleton-lock");
    let granted;
    try {
      closeSync(openSync(file, "wx"));
      writeFileSync(file, String(process.pid));
      lockFile = file;
      granted = true;
    } catch {
      const pid = Number(readFileSync(file, "utf8"));
      granted = !alive(pid);
      if (granted) {
        writeFileSync(file, String(process.pid));
        lockFile = file;
      }
    }
    report({ ev: "lock", granted });
    return granted;
  }
  quit() {
    if (quitting) return;
    let prevented = false;
    this.emit("before-quit", { preventDefault: () => (prevented = true) });
    report({ ev: "before-quit", prevented });
    if (prevented) return;
    quitting = true;
    this.emit("will-quit", { preventDefault() {} });
    report({ ev: "quit" });
    this.exit(0);
  }
  exit(code) {
    if (lockFile) unlinkSync(lockFile);
    lockFile = null;
    setTimeout(() => process.exit(code), 20); // let the report reach the test
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const app = new FakeApp();

// ---------------------------------------------------------------------------------------------------
// windows, web contents, protocol, IPC

class FakeWebContents extends EventEmitter {
  destroyed = false;
  openHandler = null;
  setWindowOpenHandler(h) {
    this.openHandler = h;
  }
  send(channel, payload) {
    report({ ev: "send", channel, payload });
  }
  isDestroyed() {
    return this.destroyed;
  }
}

const windows = [];
let appHandler = null;
const ipcHandlers = new Map();

export class BrowserWindow extends EventEmitter {
  constructor(options) {
    super();
    this.options = options;
    this.webContents = new FakeWebContents();
    this.minimized = false;
    windows.push(this);
    app.emit("web-contents-created", {}, this.webContents);
    report({ ev: "window", options, at: performance.now() });
  }
  static getFocusedWindow() {
    return windows[0] ?? null;
  }
  async loadURL(url) {
    this.url = url;
    report({ ev: "loadURL", url });
    const res = await appHandler({ url, method: "GET" });
    report({
      ev: "page",
      status: res.status,
      csp: res.headers.get("content-security-policy"),
      bytes: (await res.arrayBuffer()).byteLength,
    });
    this.emit("ready-to-show");
  }
  show() {
    report({ ev: "show" });
  }
  focus() {
    report({ ev: "focus" });
  }
  isMinimized() {
    return this.minimized;
  }
  restore() {
    this.minimized = false;
    report({ ev: "restore" });
  }
  isDestroyed() {
    return this.webContents.destroyed;
  }
}

export const protocol = {
  registerSchemesAsPrivileged: (schemes) => report({ ev: "privileged", schemes }),
  handle: (scheme, handler) => {
    report({ ev: "protocol", scheme });
    appHandler = handler;
  },
};

export const ipcMain = {
  handle: (channel, handler) => ipcHandlers.set(channel, handler),
};

export const session = {
  defaultSession: { setPermissionRequestHandler() {}, setPermissionCheckHandler() {}, setDevicePermissionHandler() {} },
};

export const shell = { openExternal: async (url) => report({ ev: "openExternal", url }) };

export const dialog = {
  showErrorBox: (title, message) => report({ ev: "errorBox", title, message }),
  showOpenDialog: async () => {
    report({ ev: "openDialog" });
    const f = process.env.FAKE_OPEN_FILE;
    return f ? { canceled: false, filePaths: [f] } : { canceled: true, filePaths: [] };
  },
};

export const Menu = {
  buildFromTemplate: (t) => t,
  setApplicationMenu: (m) => report({ ev: "menu", roles: JSON.stringify(m).match(/"role":"\w+"/g) ?? [] }),
};

// ---------------------------------------------------------------------------------------------------
// utility processes: real Node children running the real engine host

let engine = null;

class FakeUtilityProcess extends EventEmitter {
  constructor(modulePath, args, options) {
    super();
    this.child = fork(modulePath, args ?? [], {
      execArgv: ["--import", parentPortShim],
      serialization: "advanced",
      env: options?.env ?? process.env,
      stdio: "inherit",
    });
    this.pid = this.child.pid;
    this.child.on("message", (m) => {
      report({ ev: "engine-message", kind: m?.kind });
      this.emit("message", m);
    });
    this.child.on("exit", (code, signal) => {
      report({ ev: "engine-exit", code, signal, pid: this.pid });
      this.emit("exit", code ?? 1);
    });
    report({ ev: "engine-forked", pid: this.pid, modulePath, serviceName: options?.serviceName });
  }
  postMessage(m) {
    if (this.child.connected) this.child.send(m);
  }
  kill() {
    return this.child.kill();
  }
}

// Electron's safeStorage (the OS keychain) cannot run here: a reversible XOR stands in, marked so a
// test can tell its ciphertext from a plain token
export const safeStorage = {
  isEncryptionAvailable: () => true,
  encryptString: (plain) => Buffer.concat([Buffer.from("FAKEKC:"), Buffer.from(Buffer.from(plain, "utf8").map((b) => b ^ 0x5a))]),
  decryptString: (encrypted) => {
    if (!encrypted.subarray(0, 7).equals(Buffer.from("FAKEKC:"))) throw new Error("not encrypted here");
    return Buffer.from(encrypted.subarray(7).map((b) => b ^ 0x5a)).toString("utf8");
  },
};

export const utilityProcess = {
  fork: (modulePath, args, options) => (engine = new FakeUtilityProcess(modulePath, args, options)),
};

// ---------------------------------------------------------------------------------------------------
// the test's commands

const senders = {
  app: () => ({ sender: windows[0].webContents, senderFrame: { url: windows[0].url, parent: null } }),
  "other-contents": () => ({ sender: new FakeWebContents(), senderFrame: { url: windows[0].url, parent: null } }),
  iframe: () => ({ sender: windows[0].webContents, senderFrame: { url: windows[0].url, parent: {} } }),
  "file-page": () => ({ sender: windows[0].webContents, senderFrame: { url: "file:///tmp/index.html", parent: null } }),
};

process.on("message", async (m) => {
  if (m.cmd === "invoke") {
    try {
      const result = await ipcHandlers.get(m.channel)(senders[m.sender](), m.op, m.arg);
      report({ ev: "invoked", id: m.id, ok: true, result });
    } catch (err) {
      report({ ev: "invoked", id: m.id, ok: false, error: err.message });
    }
  } else if (m.cmd === "request") {
    const res = await appHandler({ url: m.url, method: m.method ?? "GET" });
    report({
      ev: "response",
      id: m.id,
      status: res.status,
      csp: res.headers.get("content-security-policy"),
      type: res.headers.get("content-type"),
    });
  } else if (m.cmd === "kill-engine") {
    engine?.child.kill("SIGKILL"); // a native crash, as far as the main process can tell
  } else if (m.cmd === "quit") {
    app.quit();
  } else if (m.cmd === "second-instance") {
    windows[0].minimized = true;
    app.emit("second-instance", {}, [], "/");
  } else if (m.cmd === "render-gone") {
    windows[0].webContents.emit("render-process-gone", { preventDefault() {} }, { reason: m.reason, exitCode: 139 });
  }
});
// the test's IPC channel must not keep a quitting app alive, nor let it outlive the test
process.channel?.unref();
process.on("disconnect", () => process.exit(0));
