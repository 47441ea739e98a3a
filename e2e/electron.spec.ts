/**
 * The desktop app through Playwright's Electron driver: the same core flow as browser mode. It needs
 * the Electron binary, which these Linux machines do not have (Electron >= 42 installs without it):
 * it runs on a developer's Mac after `npx install-electron` and `npm run build:app`.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { _electron, type ElectronApplication } from "playwright-core";
import { electronBinaryPath } from "./electronBinary.js";
import { ensureFixtures } from "../models/fixtures.js";
import { repoRoot, tempDir } from "./harness.js";
import { ChatPage } from "./pages/chatPage.js";

const bin = electronBinaryPath();
const built = existsSync(path.join(repoRoot, "dist", "electron", "main.js"));
const skip = !bin
  ? "the Electron binary is not installed here (node_modules/electron/dist); on a Mac: npx install-electron"
  : !built
    ? "the app is not built (npm run build:app)"
    : null;
if (skip) console.warn(`[skip] Electron e2e: ${skip}`);

describe.skipIf(!!skip)("the Electron app", () => {
  let app: ElectronApplication;
  let chat: ChatPage;

  beforeAll(async () => {
    const f = await ensureFixtures();
    app = await _electron.launch({
      executablePath: bin!,
      args: [path.join(repoRoot, "dist", "electron", "main.js"), `--user-data-dir=${tempDir("tandem-electron-")}`],
      env: { ...process.env, TANDEM_SLM: f.storiesSlm ?? f.randA, TANDEM_THREADS: "1" } as Record<string, string>,
    });
    chat = new ChatPage(await app.firstWindow());
    await chat.page.getByTestId("cloud-indicator").waitFor();
  });
  afterAll(async () => {
    await app?.close();
  });

  it("is locked down: no Node in the page, only the narrow bridge", async () => {
    const exposed = await chat.page.evaluate(() => ({
      require: typeof (globalThis as { require?: unknown }).require,
      process: typeof (globalThis as { process?: unknown }).process,
      bridge: Object.keys(window.tandem ?? {}).sort(),
    }));
    expect(exposed.require).toBe("undefined");
    expect(exposed.process).toBe("undefined");
    expect(exposed.bridge).toContain("send");
    expect(exposed.bridge).toContain("subscribe");
  });

  it("streams an answer and stops it", async () => {
    await chat.newChat();
    await chat.send("Once upon a time");
    await chat.waitForTokens(3);
    expect(await chat.waitForAnswerEnd()).toMatch(/complete|stopped/);
    expect(await chat.tokens().count()).toBeGreaterThan(0);
  });

  it("the rendered answer keeps every token's origin; a click shows the inspector; → moves the pinned token", async () => {
    const n = await chat.statTokens();
    const seen = await chat.renderedOrigins();
    expect(new Set(seen.map(([i]) => i)).size).toBe(n);
    const first = chat.lastAnswer().getByTestId("markdown").locator('[data-index="0"][data-testid="token"]');
    await first.click();
    await chat.page.getByTestId("token-details").waitFor();
    expect(await chat.page.getByTestId("inspector").isVisible()).toBe(true);
    await chat.page.keyboard.press("ArrowRight");
    await chat.waitFor(async () => (await chat.inspectedIndex()) === 1, "→ to pin the next token");
  });
});
