/**
 * The preload: the only bridge between the sandboxed page and the main process. It exposes one narrow,
 * typed object, `window.tandem`, built from the bridge's function table (shared/bridge.ts): each
 * operation becomes an invoke of the one "tandem:call" channel, and pushed events arrive on
 * "tandem:event". No ipcRenderer, no Node, nothing else crosses. Bundled to CommonJS (sandboxed preloads
 * cannot be ES modules) by electron/build.ts.
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from "electron";
import { BRIDGE_OPS, type Bridge, type BridgeApi, type BridgeEvent, type BridgeListener } from "../shared/bridge.js";
import { CALL_CHANNEL, EVENT_CHANNEL } from "./channels.js";

// Electron rejects an invoke with "Error invoking remote method 'tandem:call': Error: <message>": the
// page shows the engine's own message, so the wrapping is taken off (only that exact prefix).
const REMOTE_ERROR = new RegExp(`^Error invoking remote method '${CALL_CHANNEL}': (?:[A-Za-z]*Error: )?`);
export const engineMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err)).replace(REMOTE_ERROR, "");

// built from the run-time list: the page can call the table's operations and nothing else
const api = Object.fromEntries(
  BRIDGE_OPS.map((op) => [
    op,
    (arg: unknown) =>
      ipcRenderer.invoke(CALL_CHANNEL, op, arg ?? {}).catch((err: unknown) => {
        throw new Error(engineMessage(err));
      }),
  ]),
) as unknown as BridgeApi;

const bridge: Bridge = {
  ...api,
  subscribe(listener: BridgeListener) {
    // the page's listener gets the event only, never the IpcRendererEvent (which exposes `sender`)
    const wrapped = (_e: IpcRendererEvent, event: BridgeEvent) => listener(event);
    ipcRenderer.on(EVENT_CHANNEL, wrapped);
    return () => ipcRenderer.removeListener(EVENT_CHANNEL, wrapped);
  },
};

contextBridge.exposeInMainWorld("tandem", bridge);
