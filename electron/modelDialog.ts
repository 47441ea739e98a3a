/**
 * Opening a local GGUF in the desktop app, answered by the main process: the native file dialog
 * (chooseLocalModel), and a typed path checked before the engine sees it (modelPath.ts: `~` expanded,
 * a relative path refused with a clear message — the packaged app's working directory is `/`).
 */
import type { BridgeApi } from "../shared/bridge.js";
import { normaliseModelPath } from "./modelPath.js";
import type { HostedService } from "./shell.js";

export function chooseModelOverrides(service: Promise<HostedService>, pick: () => Promise<string | null>): Partial<BridgeApi> {
  const open = async (path: string) => (await service).api.openLocalModel({ path: normaliseModelPath(path) });
  return {
    openLocalModel: async ({ path }) => open(String(path ?? "")),
    chooseLocalModel: async () => {
      const file = await pick();
      return file === null ? null : open(file);
    },
  };
}
