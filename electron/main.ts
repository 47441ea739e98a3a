/**
 * Electron main process: the thin shell. It hands Electron's modules to shell.ts, which holds every
 * guard (sandboxed, context-isolated window without Node; no navigation, new windows or webviews;
 * permissions denied; IPC answered for the app's own page only) and is tested without the Electron
 * binary. The engine lives in electron/engine/ (no `electron` imports) and is tested in plain Node.
 *
 * The engine runs in the main process: node-llama-cpp's inference runs on its own native threads, so
 * the main loop stays responsive. (A utility process, so a native crash cannot take the window down, is
 * the next step; the bridge table would not change.)
 */
import { app, BrowserWindow, ipcMain, session, shell } from "electron";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { bindService, TandemService } from "./engine/service.js";
import { startShell, type ShellPlatform } from "./shell.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const rendererIndex = path.join(here, "..", "renderer", "index.html");

// Electron's modules, narrowed to what the shell uses. Windows are made in one place only: here, from
// the options shell.ts builds (windowOptions: SECURE_WEB_PREFERENCES plus the preload).
const platform: ShellPlatform = {
  enableSandbox: () => app.enableSandbox(),
  whenReady: () => app.whenReady(),
  onWebContentsCreated: (listener) => app.on("web-contents-created", (_e, contents) => listener(contents)),
  onAllWindowsClosed: (listener) => app.on("window-all-closed", listener),
  defaultSession: () => session.defaultSession,
  createWindow: (options) => new BrowserWindow(options),
  handleIpc: (channel, handler) => ipcMain.handle(channel, handler),
  openExternal: (url) => void shell.openExternal(url),
  quit: () => app.quit(),
};

startShell(platform, {
  rendererIndex,
  appIndexUrl: pathToFileURL(rendererIndex).toString(),
  preload: path.join(here, "preload.cjs"),
  async startService() {
    const service = await TandemService.start({
      dataDir: app.getPath("userData"), // models and conversations live here, never in the cwd
      // first run: no model yet — the UI offers the catalogue (download with progress/cancel/resume) or a
      // local GGUF; later runs load the model the user chose (remembered in userData/settings.json)
      slm: process.env.TANDEM_SLM ?? null,
      cloud: process.env.TANDEM_CLOUD_URL ? { kind: "tandem", url: process.env.TANDEM_CLOUD_URL, token: process.env.TANDEM_CLOUD_TOKEN ?? "" } : undefined,
    });
    return { api: bindService(service), subscribe: (l) => service.subscribe(l), close: () => service.close() };
  },
}).catch((err) => {
  console.error(err);
  app.exit(1);
});
