/**
 * Opening a local GGUF in the app: the main process checks a typed path before the engine sees it
 * (modelPath.ts: `~` expanded, a relative path refused with a clear message).
 */
import type { BridgeApi } from "../shared/bridge.js";
import { normaliseModelPath } from "./modelPath.js";
import type { HostedService } from "./shell.js";

export function chooseModelOverrides(service: Promise<HostedService>, _pick: () => Promise<string | null>): Partial<BridgeApi> {
  return {
    openLocalModel: async ({ path }) => (await service).api.openLocalModel({ path: normaliseModelPath(String(path ?? "")) }),
  };
}
