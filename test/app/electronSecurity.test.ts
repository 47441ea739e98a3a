/** The shell's security settings and IPC checks (electron/security.ts has no `electron` import). */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { isTrustedSender, parseIpcCall, SECURE_WEB_PREFERENCES } from "../../electron/security.js";
import { repoRoot } from "../helpers/shared.js";

describe("Electron shell security", () => {
  it("the window is sandboxed and isolated, with no Node", () => {
    expect(SECURE_WEB_PREFERENCES).toMatchObject({ contextIsolation: true, sandbox: true, nodeIntegration: false, webviewTag: false, webSecurity: true });
  });

  it("only the app's own page may call the engine", () => {
    const app = "file:///Applications/Tandem.app/Contents/Resources/app.asar/dist/renderer/index.html";
    expect(isTrustedSender(app, app)).toBe(true);
    expect(isTrustedSender(app + "#x", app)).toBe(true);
    expect(isTrustedSender("https://evil.example/dist/renderer/index.html", app)).toBe(false);
    expect(isTrustedSender("file:///tmp/index.html", app)).toBe(false);
    expect(isTrustedSender(undefined, app)).toBe(false);
    expect(isTrustedSender("not a url", app)).toBe(false);
  });

  it("IPC calls outside the table or with a non-object argument are refused", () => {
    expect(parseIpcCall("send", { text: "x" })).toEqual({ op: "send", arg: { text: "x" } });
    expect(parseIpcCall("openExternal", {})).toBeNull();
    expect(parseIpcCall("send", "x")).toBeNull();
    expect(parseIpcCall("send", null)).toBeNull();
  });

  it("main.ts wires every guard: sandbox, navigation, new windows, permissions, sender check, CSP", () => {
    // the shell imports electron and cannot run here; check that each guard is in place in its source
    const main = readFileSync(path.join(repoRoot, "electron", "main.ts"), "utf8");
    for (const guard of [
      "app.enableSandbox()",
      'on("will-navigate", (e) => e.preventDefault())',
      'return { action: "deny" }',
      "setPermissionRequestHandler((_wc, _perm, cb) => cb(false))",
      "isTrustedSender(e.senderFrame?.url, appIndexUrl)",
      "SECURE_WEB_PREFERENCES",
    ]) {
      expect(main, guard).toContain(guard);
    }
    const html = readFileSync(path.join(repoRoot, "renderer", "index.html"), "utf8");
    expect(html).toMatch(/http-equiv="Content-Security-Policy"[\s\S]*default-src 'none'; script-src 'self'/);
    expect(html).not.toMatch(/unsafe-inline|unsafe-eval/);
  });
});
