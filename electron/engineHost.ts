/**
 * The engine's process: Electron runs this file (bundled to dist/electron/engineHost.js) as a utility
 * process, so model loading, inference, router training and file writes never run on the main
 * process's thread, and a native crash in llama.cpp takes down this process only (the main process
 * restarts it: engineProcess.ts). It hosts the same service as browser mode (web/), on the messages of
 * engineProtocol.ts. Imports no `electron`: Electron hands a utility process `process.parentPort`.
 */
import { bindService, TandemService } from "./engine/service.js";
import { APP_TARGET_SHARE } from "../shared/cloudControl.js";
import { relayedSecretStore } from "./engine/settings.js";
import { callOp, type BridgeApi, type BridgeEvent } from "../shared/bridge.js";
import { messageOf, parseToEngine, type EngineStartOptions, type FromEngine } from "./engineProtocol.js";

/** Electron's ParentPort, as far as the host uses it. */
export interface ParentPortLike {
  on(event: "message", listener: (e: { data: unknown }) => void): unknown;
  postMessage(message: FromEngine): void;
}

/** The service as the host drives it (TandemService; a fake in unit tests). */
export interface HostableService {
  api: BridgeApi;
  subscribe(listener: (event: BridgeEvent) => void): () => void;
  /** loads the models in the background, after the host has said it is ready */
  loadInitialModels(): Promise<void>;
  close(): Promise<void>;
}

export async function openTandemService(o: EngineStartOptions, saveSecret: (token: string) => void = () => {}): Promise<HostableService> {
  const service = await TandemService.open({
    dataDir: o.dataDir,
    modelsDir: o.modelsDir,
    slm: o.slm,
    cloud: o.cloud ?? undefined,
    paceMs: o.paceMs,
    maxTokens: o.maxTokens,
    freshTargetShare: APP_TARGET_SHARE, // the app's default control (issue 18)
    // the main process keeps the token encrypted (it has safeStorage); absent, the engine's own 0600 file
    secrets: o.secret ? relayedSecretStore(o.secret.token, saveSecret) : undefined,
  });
  return {
    api: bindService(service),
    subscribe: (l) => service.subscribe(l),
    loadInitialModels: () => service.loadInitialModels(),
    close: () => service.close(),
  };
}

/** Serves the engine on `port` until told to close; then `exit(0)` (or `exit(1)` when it cannot start). */
export function hostEngine(
  port: ParentPortLike,
  open: (o: EngineStartOptions, saveSecret: (token: string) => void) => Promise<HostableService>,
  exit: (code: number) => void,
): void {
  let service: Promise<HostableService> | null = null;
  let loading: Promise<void> = Promise.resolve();
  const post = (m: FromEngine) => port.postMessage(m);

  const start = async (options: EngineStartOptions): Promise<HostableService> => {
    const s = await open(options, (token) => post({ kind: "secret", token }));
    s.subscribe((event) => post({ kind: "event", event }));
    post({ kind: "ready" });
    // the window is already up and answering; the model loads behind it, its progress as `models` events
    loading = s.loadInitialModels().catch(() => undefined); // load errors are in the model status
    return s;
  };

  port.on("message", ({ data }) => {
    const m = parseToEngine(data);
    if (!m) return; // not ours: dropped
    if (m.kind === "start") {
      if (service) return;
      service = start(m.options);
      service.catch((err) => {
        post({ kind: "failed", error: messageOf(err) });
        exit(1);
      });
    } else if (m.kind === "call") {
      const { id, op, arg } = m;
      if (!service) return post({ kind: "result", id, ok: false, error: "The engine has not started" });
      void service
        .then((s) => callOp(s.api, op, arg))
        .then(
          (result) => post({ kind: "result", id, ok: true, result }),
          (err) => post({ kind: "result", id, ok: false, error: messageOf(err) }),
        );
    } else {
      void (async () => {
        const s = await service?.catch(() => null);
        await loading; // a model half-loaded is released by close(), not dropped mid-load
        await s?.close();
        post({ kind: "closed" });
        // a message posted just before exiting can be lost: give it a moment (the main process kills
        // the engine anyway once it has the message, or when its bounded wait ends)
        setTimeout(() => exit(0), 250);
      })();
    }
  });
}

// Run as Electron's utility process (or the boot test's stand-in): `process.parentPort` is there.
const parentPort = (process as unknown as { parentPort?: ParentPortLike }).parentPort;
if (parentPort) hostEngine(parentPort, openTandemService, (code) => process.exit(code));
