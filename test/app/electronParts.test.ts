/**
 * The Electron app's parts on their own (no Electron binary): the engine relay's bounded close and
 * restart budget, the engine host's message handling, the app:// file mapping, typed model paths, the
 * preload's error messages and the production menu. The whole app: electronBoot.test.ts.
 */
import { EventEmitter } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { appFilePath, appResponse } from "../../electron/appProtocol.js";
import { engineStartOptions } from "../../electron/appConfig.js";
import { hostEngine, type HostableService } from "../../electron/engineHost.js";
import { EngineProcess, type EngineChildLike } from "../../electron/engineProcess.js";
import type { FromEngine, ToEngine } from "../../electron/engineProtocol.js";
import { appMenuTemplate } from "../../electron/menu.js";
import { normaliseModelPath } from "../../electron/modelPath.js";
import { BRIDGE_OPS, type BridgeApi, type BridgeEvent } from "../../shared/bridge.js";
import { defaultModelsDir, expandHome } from "../../inference/appFolders.js";
import { SelfDistiller } from "../../electron/engine/selfDistill.js";
import { sigmoid } from "../../router/mlp.js";
import { Rng } from "../../shared/prng.js";

/** An engine child in memory: `respond` decides what it does with each message. */
class FakeChild extends EventEmitter implements EngineChildLike {
  readonly got: ToEngine[] = [];
  killed = false;
  constructor(private readonly respond: (m: ToEngine, c: FakeChild) => void) {
    super();
  }
  postMessage(m: ToEngine) {
    this.got.push(m);
    queueMicrotask(() => this.respond(m, this));
  }
  reply(m: FromEngine | unknown) {
    this.emit("message", m);
  }
  kill() {
    this.killed = true;
    setImmediate(() => this.emit("exit", 143));
    return true;
  }
}

const start = { dataDir: "/d", modelsDir: "/m", slm: null, cloud: null };
const healthy = (m: ToEngine, c: FakeChild) => {
  if (m.kind === "start") c.reply({ kind: "ready" });
  if (m.kind === "call")
    c.reply(
      m.op === "stats"
        ? { kind: "result", id: m.id, ok: false, error: "engine says no" }
        : { kind: "result", id: m.id, ok: true, result: { op: m.op } },
    );
};

describe("EngineProcess (the main process's side of the engine)", () => {
  it("relays calls; an engine error reaches the caller as the engine's own message; malformed replies are dropped", async () => {
    const child = new FakeChild(healthy);
    const e = new EngineProcess({ fork: () => child, start });
    await e.whenReady();
    expect(await e.api.setTau({ tau: 0.2 })).toEqual({ op: "setTau" });
    await expect(e.api.stats({})).rejects.toThrow(/^engine says no$/);
    child.reply({ kind: "result", id: "x", ok: true });
    child.reply("garbage");
    expect(child.got.filter((m) => m.kind === "call").map((m) => (m as { op: string }).op)).toEqual(["setTau", "stats"]);
  });

  it("quitting waits for the engine, but only so long: a hung engine is killed", async () => {
    const hung = new FakeChild((m, c) => m.kind === "start" && c.reply({ kind: "ready" }));
    const e = new EngineProcess({ fork: () => hung, start, closeTimeoutMs: 150 });
    await e.whenReady();
    const t0 = performance.now();
    await e.close();
    expect(hung.got.at(-1)).toEqual({ kind: "close" });
    expect(hung.killed).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    await expect(e.api.stats({})).rejects.toThrow("The app is closing");
  });

  it("an engine that keeps dying is restarted a bounded number of times, then the user is told", async () => {
    const children: FakeChild[] = [];
    let gaveUp = "";
    const events: BridgeEvent[] = [];
    const e = new EngineProcess({
      fork: () => {
        const c = new FakeChild(healthy);
        children.push(c);
        return c;
      },
      start,
      maxRestarts: 2,
      onGiveUp: (m) => (gaveUp = m),
    });
    e.subscribe((ev) => events.push(ev));
    await e.whenReady();
    for (let i = 0; i < 3; i++) {
      children.at(-1)!.emit("exit", 139);
      await new Promise((r) => setImmediate(r));
    }
    expect(children).toHaveLength(3); // the first and two restarts
    expect(gaveUp).toMatch(/stopped 3 times in a row/);
    expect(events.filter((ev) => ev.type === "notice").map((ev) => (ev as { message: string }).message)).toEqual([
      expect.stringMatching(/restarting it/),
      expect.stringMatching(/restarting it/),
      expect.stringMatching(/not restarted/),
    ]);
    await expect(e.api.stats({})).rejects.toThrow(/not restarted/);
  });

  it("an engine that cannot start rejects whenReady with its reason", async () => {
    const e = new EngineProcess({
      fork: () => new FakeChild((m, c) => m.kind === "start" && c.reply({ kind: "failed", error: "EACCES: data folder" })),
      start,
    });
    await expect(e.whenReady()).rejects.toThrow("The engine could not start: EACCES: data folder");
  });
});

describe("hostEngine (the utility process's side)", () => {
  function harness() {
    const posted: FromEngine[] = [];
    let listener: (e: { data: unknown }) => void = () => {};
    const exits: number[] = [];
    const order: string[] = [];
    const listeners = new Set<(e: BridgeEvent) => void>();
    const service: HostableService = {
      api: Object.fromEntries(
        BRIDGE_OPS.map((op) => [op, async () => (op === "stats" ? Promise.reject(new Error("no stats")) : { op })]),
      ) as unknown as BridgeApi,
      subscribe: (l) => (listeners.add(l), () => listeners.delete(l)),
      loadInitialModels: async () => void order.push("load"),
      close: async () => void order.push("close"),
    };
    hostEngine(
      { on: (_e, l) => (listener = l), postMessage: (m) => posted.push(m) },
      async () => (order.push("open"), service),
      (c) => exits.push(c),
    );
    const send = (data: unknown) => listener({ data });
    const settle = () => new Promise((r) => setTimeout(r, 10));
    return { posted, exits, order, listeners, send, settle };
  }

  it("says ready before loading the model, answers calls with results or the engine's message, relays events, closes then exits", async () => {
    const h = harness();
    h.send({ kind: "call", id: 1, op: "stats", arg: {} }); // before start: refused, not run
    h.send({ kind: "start", options: start });
    await h.settle();
    expect(h.order).toEqual(["open", "load"]);
    h.send({ kind: "call", id: 2, op: "setTau", arg: { tau: 1 } });
    h.send({ kind: "call", id: 3, op: "stats", arg: {} });
    h.send({ kind: "call", id: 4, op: "rm -rf", arg: {} }); // not an operation: dropped
    for (const l of h.listeners) l({ type: "tau", tau: 1 });
    await h.settle();
    expect(h.posted).toEqual([
      { kind: "result", id: 1, ok: false, error: "The engine has not started" },
      { kind: "ready" },
      { kind: "event", event: { type: "tau", tau: 1 } },
      { kind: "result", id: 2, ok: true, result: { op: "setTau" } },
      { kind: "result", id: 3, ok: false, error: "no stats" },
    ]);
    h.send({ kind: "close" });
    await new Promise((r) => setTimeout(r, 400));
    expect(h.order).toEqual(["open", "load", "close"]);
    expect(h.posted.at(-1)).toEqual({ kind: "closed" });
    expect(h.exits).toEqual([0]);
  });
});

describe("app:// and model paths", () => {
  const root = mkdtempSync(path.join(tmpdir(), "tandem-app-"));
  writeFileSync(path.join(root, "index.html"), "<!doctype html>");

  it("maps only the renderer's folder", async () => {
    expect(appFilePath("app://tandem/", root)).toBe(path.join(root, "index.html"));
    expect(appFilePath("app://tandem/assets/a.js?x=1#y", root)).toBe(path.join(root, "assets", "a.js"));
    expect(appFilePath("app://tandem/%2e%2e/secret", root)).toBe(path.join(root, "secret")); // URL parsing drops dot segments
    for (const bad of [
      "app://tandem/..%2fsecret",
      "app://evil/index.html",
      "file:///etc/passwd",
      "app://tandem/%00",
      "app://tandem/%E0%A4%A",
    ])
      expect(appFilePath(bad, root), bad).toBeNull();
    const ok = await appResponse({ url: "app://tandem/index.html", method: "GET" }, root);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect((await appResponse({ url: "app://tandem/index.html", method: "POST" }, root)).status).toBe(405);
  });

  it("a typed model path: ~ expanded, relative refused, URIs passed on", () => {
    expect(normaliseModelPath("  ~/models/q.gguf ", "/Users/ann")).toBe("/Users/ann/models/q.gguf");
    expect(normaliseModelPath("/a/../b/q.gguf")).toBe("/b/q.gguf");
    expect(normaliseModelPath("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0")).toBe("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0");
    expect(() => normaliseModelPath("models/q.gguf")).toThrow(/relative path/);
    expect(() => normaliseModelPath("~ann/q.gguf")).toThrow(/relative path/);
    expect(() => normaliseModelPath("  ")).toThrow(/Give the model/);
    expect(expandHome("~", "/h")).toBe("/h");
  });

  it("models live in a visible folder outside the data folder; TANDEM_MODELS_DIR moves it", () => {
    expect(defaultModelsDir({}, "/Users/ann")).toBe("/Users/ann/Tandem/Models");
    expect(defaultModelsDir({ TANDEM_MODELS_DIR: "~/big/models" }, "/Users/ann")).toBe("/Users/ann/big/models");
    expect(engineStartOptions({ dataDir: "/d", modelsDir: "/m" }, { TANDEM_SLM: " ", TANDEM_PACE_MS: "x" })).toEqual({
      dataDir: "/d",
      modelsDir: "/m",
      slm: null,
      cloud: null,
      paceMs: undefined,
      maxTokens: undefined,
    });
  });
});

describe("menu", () => {
  it("has no DevTools in the packaged app", () => {
    const roles = (devTools: boolean) => JSON.stringify(appMenuTemplate({ devTools, appName: "Tandem", mac: true }));
    expect(roles(true)).toContain('"toggleDevTools"');
    expect(roles(false)).not.toMatch(/toggleDevTools|forceReload|"reload"/);
    expect(roles(false)).toContain('"quit"');
  });
});

describe("router training in the engine", () => {
  it("pauses while an answer is being written and resumes after it: it never delays a token", async () => {
    const H = 16;
    const slm = { identity: { name: "model-pause", vocabHash: "p".repeat(64), vocabSize: 100 }, hiddenSize: H, vocabSize: 100 };
    const d = new SelfDistiller(slm, { dir: mkdtempSync(path.join(tmpdir(), "tandem-pause-")), minSamples: 2000, minAnswers: 5 });
    const rng = new Rng(7);
    const w = Array.from({ length: H }, () => rng.normal());
    for (let a = 0; a < 6; a++) {
      d.beginAnswer();
      for (let p = 0; p < 400; p++) {
        const hidden = Float64Array.from({ length: H }, () => rng.normal());
        d.router.score({ top1Prob: sigmoid(hidden.reduce((s, x, i) => s + x * w[i]!, 0)), hidden, position: p });
      }
    }
    const training = d.afterAnswer(); // due: trains between answers
    let finished = false;
    void training.then(() => (finished = true));
    await new Promise((r) => setTimeout(r, 50)); // training is under way
    d.beginAnswer(); // the user sends the next message
    await new Promise((r) => setTimeout(r, 50)); // the slice running then ends (≤ 15 ms + one step)
    const cpu = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 600));
    const used = process.cpuUsage(cpu);
    expect(finished).toBe(false); // held at a slice boundary while the answer runs…
    expect((used.user + used.system) / 1000).toBeLessThan(40); // …using no CPU (training runs ~160–600 ms of CPU in that time)
    expect(await d.afterAnswer()).toBeNull(); // that answer ends: training goes on (one at a time)
    expect((await training)?.kind).toMatch(/ready|not-yet/);
    await d.dispose();
  });
});
