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

// built from the run-time list: the page can call the table's operations and nothing else
const api = Object.fromEntries(BRIDGE_OPS.map((op) => [op, (arg: unknown) => ipcRenderer.invoke(CALL_CHANNEL, op, arg ?? {})])) as unknown as BridgeApi;

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
