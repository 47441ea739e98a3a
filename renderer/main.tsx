/** Renderer entry: picks the bridge (Electron's preload, else browser mode's WebSocket) and mounts. */
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import type { Bridge } from "../shared/bridge";
import { createWsBridge } from "./bridge/wsClient";
import { App } from "./components/App";
import { Ctx } from "./context";
import { createController } from "./state/controller";
import { createStores } from "./state/stores";
import "./styles.css";

declare global {
  interface Window {
    /** set by electron/preload.ts: the narrow typed bridge */
    tandem?: Bridge;
  }
}

const stores = createStores();
const onError = (msg: string) => stores.session.setState((s) => ({ notices: [...s.notices, msg] }));
let bridge: Bridge;
if (window.tandem) bridge = window.tandem;
else {
  const ws = createWsBridge(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/bridge`);
  ws.onConnection((state) => {
    stores.session.setState({ connected: state === "open" });
    if (state === "open") void controller.sync().catch((e: Error) => onError(e.message));
  });
  bridge = ws;
}
const controller = createController(bridge, stores, onError);
if (window.tandem) void controller.sync().catch((e: Error) => onError(e.message));

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <Ctx.Provider value={{ stores, controller }}>
      <App />
    </Ctx.Provider>
  </StrictMode>,
);
