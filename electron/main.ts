/**
 * Electron main process: the thin shell. It hands Electron's modules to shell.ts, which holds every
 * guard (sandboxed, context-isolated window without Node; no navigation, new windows or webviews;
 * permissions denied; IPC answered for the app's own page only) and the lifecycle (window first,
 * single instance, quitting waits for the engine, a crashed page reloaded), tested without the Electron
 * binary. The engine runs in a utility process (engineHost.ts, relayed by engineProcess.ts): model
 * loading, inference, router training and file writes never block this process, and a native crash in
 * llama.cpp restarts the engine instead of taking the app down.
 */
import { app, BrowserWindow, dialog, ipcMain, Menu, protocol, safeStorage, session, shell, utilityProcess } from "electron";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defaultModelsDir } from "../inference/appFolders.js";
import { engineStartOptions } from "./appConfig.js";
import { APP_INDEX_URL, APP_SCHEME, APP_SCHEME_PRIVILEGES } from "./appProtocol.js";
import { chooseModelOverrides } from "./modelDialog.js";
import { appMenuTemplate } from "./menu.js";
import { EngineProcess, type EngineChildLike } from "./engineProcess.js";
import { keychainKeeper } from "./engineSecrets.js";
import { startShell, type ShellPlatform } from "./shell.js";
import { errorMessage } from "../shared/errors.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const rendererIndex = path.join(here, "..", "renderer", "index.html");

// One data folder for `npm start` (Electron run on the project) and the packaged app, whatever name
// Electron would derive; an explicit --user-data-dir (tests) or TANDEM_DATA_DIR wins.
const explicitData = app.commandLine.hasSwitch("user-data-dir") || !!process.env.TANDEM_DATA_DIR;
app.setName("Tandem");
app.setPath(
  "userData",
  process.env.TANDEM_DATA_DIR
    ? path.resolve(process.env.TANDEM_DATA_DIR)
    : app.commandLine.getSwitchValue("user-data-dir") || path.join(app.getPath("appData"), "Tandem"),
);
protocol.registerSchemesAsPrivileged([{ scheme: APP_SCHEME, privileges: APP_SCHEME_PRIVILEGES }]);

// Electron's modules, narrowed to what the shell uses. Windows are made in one place only: here, from
// the options shell.ts builds (windowOptions: SECURE_WEB_PREFERENCES plus the preload).
const platform: ShellPlatform = {
  requestSingleInstanceLock: () => app.requestSingleInstanceLock(),
  onSecondInstance: (listener) => app.on("second-instance", listener),
  enableSandbox: () => app.enableSandbox(),
  whenReady: () => app.whenReady(),
  onWebContentsCreated: (listener) => app.on("web-contents-created", (_e, contents) => listener(contents)),
  onAllWindowsClosed: (listener) => app.on("window-all-closed", listener),
  onBeforeQuit: (listener) => app.on("before-quit", listener),
  defaultSession: () => session.defaultSession,
  handleAppProtocol: (handler) => protocol.handle(APP_SCHEME, (request) => handler(request)),
  createWindow: (options) => new BrowserWindow(options),
  handleIpc: (channel, handler) => ipcMain.handle(channel, handler),
  openExternal: (url) => void shell.openExternal(url),
  showErrorDialog: (title, message) => dialog.showErrorBox(title, message),
  quit: () => app.quit(),
};

async function startEngine(): Promise<EngineProcess> {
  const dataDir = app.getPath("userData");
  // a data folder given explicitly (tests) keeps its models inside it; otherwise the shared, visible folder
  const modelsDir = explicitData && !process.env.TANDEM_MODELS_DIR ? path.join(dataDir, "models") : defaultModelsDir();
  // the cloud token, encrypted by the OS keychain here: the engine's utility process has no safeStorage
  const keeper = await keychainKeeper(dataDir, safeStorage);
  const start = engineStartOptions({ dataDir, modelsDir }, process.env);
  const engine = new EngineProcess({
    fork: () => utilityProcess.fork(path.join(here, "engineHost.js"), [], { serviceName: "Tandem Engine" }) as unknown as EngineChildLike,
    start: () => (keeper ? { ...start, secret: keeper.secret() } : start),
    onSecret: keeper ? (token) => keeper.save(token) : undefined,
    onGiveUp: (message) => dialog.showErrorBox("Tandem's engine keeps stopping", message),
  });
  await engine.whenReady();
  return engine;
}

startShell(platform, {
  rendererIndex,
  appIndexUrl: APP_INDEX_URL,
  preload: path.join(here, "preload.cjs"),
  devTools: !app.isPackaged,
  startService: startEngine,
  overrides: (service) =>
    chooseModelOverrides(service, async () => {
      const win = BrowserWindow.getFocusedWindow();
      const options = {
        title: "Open a GGUF model",
        properties: ["openFile" as const],
        filters: [{ name: "GGUF models", extensions: ["gguf"] }],
      };
      const r = win ? await dialog.showOpenDialog(win, options) : await dialog.showOpenDialog(options);
      return r.canceled ? null : (r.filePaths[0] ?? null);
    }),
}).catch((err) => {
  dialog.showErrorBox("Tandem could not start", errorMessage(err));
  app.exit(1);
});
void app
  .whenReady()
  .then(() =>
    Menu.setApplicationMenu(
      Menu.buildFromTemplate(
        appMenuTemplate({ devTools: !app.isPackaged, appName: app.getName() }) as Electron.MenuItemConstructorOptions[],
      ),
    ),
  );
