/**
 * Electron main process: the thin shell. One window (sandboxed, context-isolated, no Node), the engine
 * service hosted here, IPC registration with sender checks. Everything else lives in electron/engine/
 * (no `electron` imports) and is tested in plain Node.
 *
 * The engine runs in the main process: node-llama-cpp's inference runs on its own native threads, so
 * the main loop stays responsive. (A utility process, so a native crash cannot take the window down, is
 * the next step; the bridge table would not change.)
 */
import { app, BrowserWindow, ipcMain, session, shell } from "electron";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { callOp } from "../shared/bridge.js";
import { CALL_CHANNEL, EVENT_CHANNEL } from "./channels.js";
import { bindService, TandemService } from "./engine/service.js";
import { isTrustedSender, parseIpcCall, SECURE_WEB_PREFERENCES } from "./security.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const rendererIndex = path.join(here, "..", "renderer", "index.html");
const appIndexUrl = pathToFileURL(rendererIndex).toString();

app.enableSandbox();

// No navigation, no new windows, no webviews, from any web contents.
app.on("web-contents-created", (_e, contents) => {
  contents.setWindowOpenHandler(({ url }) => {
    // links in answers open in the user's browser, never inside the app
    if (/^https?:\/\//.test(url)) void shell.openExternal(url);
    return { action: "deny" };
  });
  contents.on("will-navigate", (e) => e.preventDefault());
  contents.on("will-redirect", (e) => e.preventDefault());
  contents.on("will-attach-webview", (e) => e.preventDefault());
});

async function main(): Promise<void> {
  await app.whenReady();
  // permission requests (camera, notifications, geolocation...) are all denied
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, cb) => cb(false));
  session.defaultSession.setPermissionCheckHandler(() => false);

  const userData = app.getPath("userData"); // models and conversations live here, never in the cwd
  const service = await TandemService.start({
    dataDir: userData,
    // first run: no model yet — the UI offers the catalogue (download with progress/cancel/resume) or a
    // local GGUF; later runs load the model the user chose (remembered in userData/settings.json)
    slm: process.env.TANDEM_SLM ?? null,
    cloud: process.env.TANDEM_CLOUD_URL ? { kind: "tandem", url: process.env.TANDEM_CLOUD_URL, token: process.env.TANDEM_CLOUD_TOKEN ?? "" } : undefined,
  });
  const api = bindService(service);

  const win = new BrowserWindow({
    width: 1280,
    height: 820,
    minWidth: 760,
    minHeight: 520,
    title: "Tandem",
    show: false,
    webPreferences: { ...SECURE_WEB_PREFERENCES, preload: path.join(here, "preload.cjs") },
  });
  win.once("ready-to-show", () => win.show());

  ipcMain.handle(CALL_CHANNEL, async (e, op: unknown, arg: unknown) => {
    // only our window's top frame, showing our page, may call the engine
    if (e.sender !== win.webContents || e.senderFrame?.parent !== null || !isTrustedSender(e.senderFrame?.url, appIndexUrl)) {
      throw new Error("Refused: unknown sender");
    }
    const call = parseIpcCall(op, arg);
    if (!call) throw new Error("Refused: malformed call");
    return callOp(api, call.op, call.arg);
  });
  const unsubscribe = service.subscribe((event) => {
    if (!win.isDestroyed()) win.webContents.send(EVENT_CHANNEL, event);
  });

  await win.loadFile(rendererIndex);

  app.on("window-all-closed", async () => {
    unsubscribe();
    await service.close();
    app.quit();
  });
}

main().catch((err) => {
  console.error(err);
  app.exit(1);
});
