/** Renderer entry: picks the bridge (Electron's preload, else browser mode's WebSocket) and mounts. */
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import type { Bridge } from "../shared/bridge";
import { createWsBridge } from "./bridge/wsClient";
import { App } from "./components/App";
import { Ctx } from "./context";
import { createController } from "./state/controller";
import { createStores, parseDisplaySettings, type DisplaySettings } from "./state/stores";
import "katex/dist/katex.min.css";
import "./styles.css";

declare global {
  interface Window {
    /** set by electron/preload.ts: the narrow typed bridge */
    tandem?: Bridge;
  }
}

const DISPLAY_KEY = "tandem.display";
const readDisplay = (): DisplaySettings => {
  try {
    return parseDisplaySettings(localStorage.getItem(DISPLAY_KEY));
  } catch {
    return parseDisplaySettings(null); // storage blocked: defaults
  }
};
const stores = createStores(readDisplay());
// the theme is an attribute on <html> (CSS picks the palette); "system" leaves it to prefers-color-scheme
const applyDisplay = ({ theme, showOrigins }: DisplaySettings) => {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(DISPLAY_KEY, JSON.stringify({ theme, showOrigins }));
  } catch {
    // not kept across sessions; the setting still applies now
  }
};
applyDisplay(stores.ui.getState());
stores.ui.subscribe((s, prev) => {
  if (s.theme !== prev.theme || s.showOrigins !== prev.showOrigins) applyDisplay(s);
});
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
    <Ctx.Provider value={{ stores, controller, bridge }}>
      <App />
    </Ctx.Provider>
  </StrictMode>,
);
