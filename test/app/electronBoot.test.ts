/**
 * The Electron app booted without the Electron binary: electron/build.ts builds the app (main process,
 * engine host, preload, trained routers) exactly as `npm run build:app` does; the built main process
 * runs in plain Node against a small fake `electron` module (test/app/boot/fakeElectron.mjs), and its
 * utilityProcess.fork runs the built engine host in a real child process with a real model. The test
 * drives it like Electron would: IPC calls from the page and from other senders, the engine killed
 * mid-answer, a second instance, Cmd+Q. (e2e/electron.spec.ts covers the same flow with the real
 * binary, on a Mac.)
 */
import { fork, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildElectron } from "../../electron/build.js";
import { CALL_CHANNEL, EVENT_CHANNEL } from "../../electron/channels.js";
import { ConversationStore } from "../../electron/engine/conversationStore.js";
import type { BridgeEvent, Conversation, StoredMessage } from "../../shared/bridge.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { repoRoot } from "../helpers/shared.js";

const boot = path.dirname(fileURLToPath(import.meta.url));
const register = path.join(boot, "boot", "register.mjs");

type Ev = { ev: string; [k: string]: unknown };

/** One launched main process: what it reported, and a way to command it. */
class App {
  readonly events: Ev[] = [];
  readonly exited: Promise<number | null>;
  private nextId = 1;
  private waiters: (() => void)[] = [];
  constructor(readonly child: ChildProcess) {
    child.on("message", (m: Ev) => {
      this.events.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((r) => child.on("exit", (code) => (r(code), this.waiters.splice(0).forEach((w) => w()))));
  }
  /** The first event (from index `from`) matching `pred`. */
  async waitFor(pred: (e: Ev) => boolean, what: string, from = 0, timeoutMs = 60_000): Promise<Ev> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.slice(from).find(pred);
      if (e) return e;
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(`no ${what} (exit ${this.child.exitCode}); saw ${this.events.map((x) => x.ev).join(",")}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
  /** Pushed bridge events (what the window received), from index `from`. */
  bridgeEvents(from = 0): BridgeEvent[] {
    return this.events.slice(from).flatMap((e) => (e.ev === "send" && e.channel === EVENT_CHANNEL ? [e.payload as BridgeEvent] : []));
  }
  waitForBridge<T extends BridgeEvent["type"]>(
    type: T,
    pred: (e: Extract<BridgeEvent, { type: T }>) => boolean = () => true,
    from = 0,
    timeoutMs?: number,
  ) {
    return this.waitFor(
      (e) =>
        e.ev === "send" &&
        e.channel === EVENT_CHANNEL &&
        (e.payload as BridgeEvent).type === type &&
        pred(e.payload as Extract<BridgeEvent, { type: T }>),
      `bridge event ${type}`,
      from,
      timeoutMs,
    ).then((e) => e.payload as Extract<BridgeEvent, { type: T }>);
  }
  async invoke(op: string, arg: unknown, sender = "app"): Promise<{ ok: boolean; result?: unknown; error?: string }> {
    const id = this.nextId++;
    const from = this.events.length;
    this.child.send({ cmd: "invoke", id, channel: CALL_CHANNEL, op, arg, sender });
    return (await this.waitFor((e) => e.ev === "invoked" && e.id === id, `reply to ${op}`, from)) as never;
  }
  async call<T>(op: string, arg: unknown = {}): Promise<T> {
    const r = await this.invoke(op, arg);
    if (!r.ok) throw new Error(r.error);
    return r.result as T;
  }
  send(cmd: object): void {
    this.child.send(cmd);
  }
  index(pred: (e: Ev) => boolean): number {
    return this.events.findIndex(pred);
  }
}

let work: string;
let mainJs: string;
let appData: string;
let slm: string;
let stories: boolean;
const apps: App[] = [];

function launch(env: Record<string, string> = {}): App {
  const child = fork(mainJs, [], {
    execArgv: ["--import", register],
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: {
      ...process.env,
      FAKE_APPDATA: appData,
      TANDEM_MODELS_DIR: path.join(work, "models"),
      TANDEM_SLM: slm,
      TANDEM_THREADS: "1",
      TANDEM_PACE_MS: "15", // tiny models answer faster than a kill can land mid-answer
      TANDEM_MAX_TOKENS: "200",
      FAKE_OPEN_FILE: slm, // what the fake file dialog returns
      ...env,
    },
  });
  const a = new App(child);
  apps.push(a);
  return a;
}

beforeAll(async () => {
  // built like `npm run build:app`, into a folder of its own beside dist/ (node_modules resolve from the repo)
  work = path.join(repoRoot, "dist", `.boot-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(path.join(work, "renderer"), { recursive: true });
  copyFileSync(path.join(repoRoot, "renderer", "index.html"), path.join(work, "renderer", "index.html"));
  mainJs = path.join(await buildElectron(path.join(work, "electron")), "main.js");
  appData = mkdtempSync(path.join(tmpdir(), "tandem-boot-"));
  const f = await ensureFixtures();
  stories = !!f.storiesSlm;
  slm = f.storiesSlm ?? f.randA;
}, 180_000);

afterAll(async () => {
  for (const a of apps) if (a.child.exitCode === null) a.child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
  rmSync(appData, { recursive: true, force: true });
});

describe("the built Electron app, booted in Node against a fake electron module", () => {
  let app: App;
  let conversationId: string;
  let firstAnswer: StoredMessage;

  it("builds the engine host and ships the trained routers beside the bundle", () => {
    for (const f of ["main.js", "engineHost.js", "preload.cjs"]) expect(existsSync(path.join(work, "electron", f)), f).toBe(true);
    expect(existsSync(path.join(work, "electron", "main.js.map"))).toBe(false); // no source maps shipped
  });

  it("shows a hardened window at once, before the model has loaded, and serves the page from app:// with the CSP", async () => {
    app = launch();
    const win = await app.waitFor((e) => e.ev === "window", "window");
    await app.waitFor((e) => e.ev === "page", "page");
    const loaded = await app.waitForBridge("models", (e) => e.models.slm.loaded);
    // the order the window saw: its creation first, then the engine, then the loaded model
    const iWin = app.events.indexOf(win);
    expect(iWin).toBeLessThan(app.index((e) => e.ev === "engine-forked"));
    expect(iWin).toBeLessThan(
      app.index(
        (e) =>
          e.ev === "send" &&
          (e.payload as BridgeEvent).type === "models" &&
          (e.payload as { models: { slm: { loaded: boolean } } }).models.slm.loaded,
      ),
    );
    expect(win.options).toMatchObject({
      show: false,
      webPreferences: { sandbox: true, contextIsolation: true, nodeIntegration: false, webSecurity: true },
    });
    expect((win.options as { webPreferences: { preload: string } }).webPreferences.preload).toBe(
      path.join(work, "electron", "preload.cjs"),
    );
    expect(app.events.find((e) => e.ev === "sandbox")).toBeTruthy();
    expect(app.events.find((e) => e.ev === "privileged")).toMatchObject({
      schemes: [{ scheme: "app", privileges: { standard: true, secure: true } }],
    });
    expect(app.events.find((e) => e.ev === "loadURL")).toMatchObject({ url: "app://tandem/index.html" });
    expect(app.events.find((e) => e.ev === "page")).toMatchObject({ status: 200, csp: expect.stringContaining("script-src 'self'") });
    expect(app.events.find((e) => e.ev === "show")).toBeTruthy();
    // one data folder for npm start and the package, whatever name Electron derives
    expect(app.events.find((e) => e.ev === "setPath")).toMatchObject({ name: "userData", path: path.join(appData, "Tandem") });
    expect(app.events.find((e) => e.ev === "engine-forked")).toMatchObject({ modulePath: path.join(work, "electron", "engineHost.js") });
    // the trained router for this SLM is found in the built app (router/trained is not beside the bundle)
    if (stories) expect(loaded.models.router).toMatch(/^learned/);
    // development: DevTools in the menu
    expect(app.events.find((e) => e.ev === "menu")?.roles).toContain('"role":"toggleDevTools"');
  });

  it("serves only the renderer's files on app://", async () => {
    for (const [url, status] of [
      ["app://tandem/index.html", 200],
      ["app://tandem/../../package.json", 404], // URL parsing drops the dots: renderer/package.json, absent
      ["app://tandem/..%2f..%2fpackage.json", 403],
      ["app://other/index.html", 403],
      ["app://tandem/missing.js", 404],
    ] as const) {
      const from = app.events.length;
      app.send({ cmd: "request", id: url, url });
      expect(await app.waitFor((e) => e.ev === "response" && e.id === url, url, from), url).toMatchObject({ status });
    }
  });

  it("answers IPC from the app's page only", async () => {
    expect(await app.call("setTau", { tau: 0 })).toEqual({ tau: 0 });
    for (const sender of ["other-contents", "iframe", "file-page"]) {
      expect(await app.invoke("stats", {}, sender), sender).toEqual({
        ev: "invoked",
        id: expect.any(Number),
        ok: false,
        error: "Refused: unknown sender",
      });
    }
    expect((await app.invoke("openExternal", {})).error).toBe("Refused: malformed call");
    // the engine's own message, not wrapped
    expect((await app.invoke("getConversation", { id: "nope" })).error).toMatch(/conversation/i);
    // a relative model path is refused in the main process (the packaged app's cwd is /)
    expect((await app.invoke("openLocalModel", { path: "models/x.gguf" })).error).toMatch(/relative path/);
  });

  it("opens a local GGUF through the native file dialog, in the main process", async () => {
    const from = app.events.length;
    const models = await app.call<{ slm: { loaded: boolean; source: string } }>("chooseLocalModel");
    expect(app.events.slice(from).some((e) => e.ev === "openDialog")).toBe(true);
    expect(models.slm).toMatchObject({ loaded: true, source: slm });
  });

  it("streams an answer from the engine process over the bridge", async () => {
    const conv = await app.call<Conversation>("createConversation", { title: "boot" });
    conversationId = conv.id;
    const from = app.events.length;
    await app.call("send", { requestId: "r1", conversationId, text: "Once upon a time" });
    const end = await app.waitForBridge("answer-end", (e) => e.requestId === "r1", from);
    const deltas = app.bridgeEvents(from).filter((e) => e.type === "answer-delta" && e.requestId === "r1");
    expect(deltas.length).toBeGreaterThan(0);
    const streamed = deltas.flatMap((d) => (d.type === "answer-delta" ? d.tokens : []));
    expect(end.message.status).toBe("complete");
    expect(end.message.tokens!.map((t) => t.tokenId)).toEqual(streamed.map((t) => t.tokenId));
    expect(streamed.every((t) => t.origin === "local")).toBe(true); // τ = 0, no cloud
    firstAnswer = end.message;
  });

  it("a crashed engine: the window is told, the engine restarts, the conversation is intact", async () => {
    await app.call("setTau", { tau: 0 });
    const from = app.events.length;
    const firstPid = app.events.filter((e) => e.ev === "engine-forked").at(-1)!.pid;
    await app.call("send", { requestId: "r2", conversationId, text: "The cat" });
    const delta = await app.waitForBridge("answer-delta", (e) => e.requestId === "r2", from);
    app.send({ cmd: "kill-engine" });
    const err = await app.waitForBridge("answer-error", (e) => e.requestId === "r2", from);
    expect(err.error).toMatch(/engine stopped unexpectedly.*answer so far is kept/);
    expect((await app.waitForBridge("notice", (e) => /restarting/.test(e.message), from)).message).toMatch(/conversations are kept/);
    const second = await app.waitFor((e) => e.ev === "engine-forked" && e.pid !== firstPid, "a new engine", from);
    expect(second.pid).not.toBe(firstPid);
    // the window gets the new engine's state, then its model
    await app.waitForBridge("conversations", (e) => e.conversations.some((c) => c.id === conversationId), from);
    await app.waitForBridge("models", (e) => e.models.slm.loaded, app.events.indexOf(second));
    const conv = await app.call<Conversation>("getConversation", { id: conversationId });
    expect(conv.messages.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(conv.messages[1].content).toBe(firstAnswer.content);
    expect(conv.messages[2].content).toBe("The cat");
    // every token the window was shown before the crash was journalled: it is still there
    const shown = delta.tokens.map((t) => t.tokenId);
    expect(conv.messages[3].tokens!.slice(0, shown.length).map((t) => t.tokenId)).toEqual(shown);
    // and the new engine answers
    const f2 = app.events.length;
    await app.call("send", { requestId: "r3", conversationId, text: "A dog" });
    expect((await app.waitForBridge("answer-end", (e) => e.requestId === "r3", f2)).message.status).toBe("complete");
  });

  it("the cloud token is encrypted by the main process (safeStorage); a restarted engine still has it", async () => {
    const token = "boot-token-0123456789abcdef";
    const status = await app.call<{ hasToken: boolean }>("setCloudSettings", { kind: "tandem", url: "http://127.0.0.1:9", token });
    expect(status.hasToken).toBe(true);
    const file = path.join(appData, "Tandem", "cloud-token");
    const deadline = Date.now() + 10_000;
    while (!existsSync(file) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const stored = readFileSync(file, "utf8");
    expect(stored).not.toContain(token);
    // the fake keychain's mark: encrypted by the main process, never written plain by the engine
    expect(Buffer.from(stored, "base64").subarray(0, 7).toString()).toBe("FAKEKC:");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const from = app.events.length;
    const firstPid = app.events.filter((e) => e.ev === "engine-forked").at(-1)!.pid;
    app.send({ cmd: "kill-engine" });
    await app.waitFor((e) => e.ev === "engine-forked" && e.pid !== firstPid, "a new engine", from);
    await app.waitForBridge("conversations", () => true, from);
    const settings = await app.call<{ tokenStorage: string; cloud: { hasToken: boolean; url: string } }>("getSettings");
    expect(settings).toMatchObject({ tokenStorage: "keychain", cloud: { hasToken: true, url: "http://127.0.0.1:9" } });
    await app.call("setCloudSettings", { kind: "none", url: "", token: "" });
  });

  it("a second instance is refused and the first window comes forward", async () => {
    const b = launch();
    expect(await b.waitFor((e) => e.ev === "lock", "lock")).toMatchObject({ granted: false });
    expect(await b.exited).toBe(0);
    expect(b.events.some((e) => e.ev === "window" || e.ev === "engine-forked")).toBe(false);
    const from = app.events.length;
    app.send({ cmd: "second-instance" });
    await app.waitFor((e) => e.ev === "focus", "focus", from);
    expect(app.events.slice(from).map((e) => e.ev)).toEqual(expect.arrayContaining(["restore", "show", "focus"]));
  });

  it("a crashed page is reloaded", async () => {
    const from = app.events.length;
    app.send({ cmd: "render-gone", reason: "crashed" });
    expect(await app.waitFor((e) => e.ev === "loadURL", "reload", from)).toMatchObject({ url: "app://tandem/index.html" });
  });

  it("quitting waits for the engine to close: conversations flushed, then the app exits", async () => {
    const from = app.events.length;
    app.send({ cmd: "quit" });
    expect(await app.exited).toBe(0);
    // the reloaded page of the test before may still report itself ("page") before the quit arrives
    const all = app.events.slice(from).map((e) => (e.ev === "engine-message" ? `engine:${e.kind}` : e.ev));
    const start = all.indexOf("before-quit");
    expect(all.slice(0, start).every((ev) => ev === "page")).toBe(true);
    const seq = all.slice(start);
    expect(seq[0]).toBe("before-quit");
    expect(app.events[from + start]).toMatchObject({ prevented: true });
    const closed = seq.indexOf("engine:closed");
    expect(closed).toBeGreaterThan(0);
    expect(seq.indexOf("engine-exit")).toBeGreaterThan(closed);
    expect(seq.lastIndexOf("quit")).toBeGreaterThan(closed);
    // what the engine wrote is on disk in the app's one data folder
    const store = await ConversationStore.open(path.join(appData, "Tandem"));
    const conv = store.get(conversationId);
    expect(conv.messages.at(-1)!.status).toBe("complete");
    expect(conv.messages).toHaveLength(6);
  });
});
