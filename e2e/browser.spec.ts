/**
 * Browser mode end to end: the real engine (fixture models, one thread), a real cloud token server
 * process, Debian's Chromium. Acceptance of issue 3.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { LocalModel } from "../inference/localModel.js";
import { ensureFixtures } from "../models/fixtures.js";
import {
  artifactsDir,
  kill,
  launchChromium,
  missingForE2e,
  startCloud,
  startWeb,
  tempDir,
  type CloudProc,
  type WebProc,
} from "./harness.js";
import { startHostileCloud, type HostileCloud } from "./hostileCloud.js";
import { ChatPage } from "./pages/chatPage.js";

const missing = missingForE2e();
const fixtures = await ensureFixtures();
const pairMissing =
  fixtures.storiesSlm && fixtures.storiesLlm
    ? null
    : `the stories260K pair (${fixtures.sharedMissingReason ?? "../shared missing"}): random-weight models have no middle τ with both origins`;
const skip = missing ?? pairMissing;
if (skip) console.warn(`[skip] browser e2e: ${skip}`);

const MID_TAU = 0.5;

describe.skipIf(!!skip)("browser mode, end to end", () => {
  let browser: Browser;
  let cloud: CloudProc;
  let web: WebProc;
  let page: Page;
  let chat: ChatPage;
  const dataDir = tempDir("tandem-e2e-");

  beforeAll(async () => {
    [browser, cloud] = await Promise.all([launchChromium(), startCloud(fixtures.storiesLlm!)]);
    web = await startWeb({ dataDir, slm: fixtures.storiesSlm!, cloud, tau: 0 });
    page = await browser.newPage({ viewport: { width: 1360, height: 860 }, colorScheme: "light" });
    page.on("pageerror", (e) => console.error("page error:", e));
    chat = new ChatPage(page);
    await chat.open(web.url);
    await chat.waitFor(async () => (await chat.cloudState()) === "online", "the cloud to be online");
  });

  afterAll(async () => {
    await browser?.close();
    if (web) await kill(web.child, "SIGTERM");
    if (cloud) await kill(cloud.child);
  });

  it("a fresh install knows the cloud share a τ gives before the first answer (calibrated when the model loaded)", async () => {
    await chat.waitFor(
      async () => /^≈\d+(\.\d)?% cloud at this τ$/.test((await page.getByTestId("tau-share").textContent()) ?? ""),
      "the share estimate",
    );
    expect(await chat.answers.count()).toBe(0); // no answer was needed for it
  });

  it("at τ = 0 no token comes from the cloud", async () => {
    await chat.newChat();
    await chat.setTau(0);
    await chat.send("Once upon a time");
    expect(await chat.waitForAnswerEnd()).toBe("complete");
    await chat.showTokens();
    const c = await chat.originCounts();
    expect(c.local).toBeGreaterThan(10);
    expect(c.cloud + c.fallback).toBe(0);
  });

  it("at a middle τ the answer streams with both origins, coloured", async () => {
    await chat.setTau(MID_TAU);
    await chat.send("The little dog");
    await chat.waitForTokens(25);
    expect(await chat.lastAnswer().getAttribute("data-status")).toBe("streaming");
    await page.screenshot({ path: path.join(artifactsDir, "light-mid-stream.png") });
    expect(await chat.waitForAnswerEnd()).toBe("complete");
    await chat.showTokens();
    const c = await chat.originCounts();
    expect(c.local).toBeGreaterThan(0);
    expect(c.cloud).toBeGreaterThan(0);
    expect(c.fallback).toBe(0);
    // cloud tokens look different from local ones
    const colour = (o: string) =>
      chat
        .tokens()
        .and(page.locator(`[data-origin=${o}]`))
        .first()
        .evaluate((e) => getComputedStyle(e).backgroundColor);
    expect(await colour("cloud")).not.toBe(await colour("local"));
    const share = await chat.lastAnswer().getByTestId("stat-share").textContent();
    expect(share).toMatch(/^[1-9]\d*(\.\d)?% cloud$/);
    expect(await page.getByTestId("tau-share").textContent()).toContain("cloud");
  });

  it("the inspector shows a cloud token's details", async () => {
    const token = chat.tokens().and(page.locator("[data-origin=cloud]")).first();
    await token.click();
    const details = page.getByTestId("token-details");
    await details.waitFor();
    expect(await details.getAttribute("data-origin")).toBe("cloud");
    expect(await page.getByTestId("insp-confidence").textContent()).toMatch(/^0\.\d{3} < τ 0\.50 → ask the cloud$/);
    expect(await page.getByTestId("insp-cloud").textContent()).toMatch(/^\d+ · log p -?\d+\.\d{3}/);
    expect(await page.getByTestId("insp-latency").textContent()).toMatch(/^\d+\.\d ms$/);
    expect(await page.getByTestId("insp-candidates").locator("tr").count()).toBeGreaterThan(1);
    await page.screenshot({ path: path.join(artifactsDir, "light-inspector.png") });
  });

  it("keyboard: Esc stops the answer, Ctrl+N starts a new conversation", async () => {
    await chat.send("Once there was");
    await chat.waitForTokens(4);
    await page.keyboard.press("Escape");
    expect(await chat.waitForAnswerEnd(10_000)).toBe("stopped");
    const before = await page.getByTestId("conversation-item").count();
    await page.keyboard.press("Control+n");
    await chat.waitFor(async () => (await page.getByTestId("conversation-item").count()) === before + 1, "Ctrl+N to create a conversation");
  });

  it("Stop ends the answer", async () => {
    await chat.send("One day");
    await chat.waitForTokens(8);
    await page.getByTestId("stop").click();
    expect(await chat.waitForAnswerEnd(10_000)).toBe("stopped");
    const n = await chat.tokens().count();
    expect(n).toBeLessThan(160);
    await new Promise((r) => setTimeout(r, 400));
    expect(await chat.tokens().count()).toBe(n); // nothing streams after the stop
    await page.getByTestId("send").waitFor(); // the composer is ready again
  });

  it("dark theme follows the system", async () => {
    await page.emulateMedia({ colorScheme: "dark" });
    await chat.send("Lily went");
    await chat.waitForTokens(25);
    const bg = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
    expect(bg).toBe("rgb(18, 18, 22)");
    await page.screenshot({ path: path.join(artifactsDir, "dark-mid-stream.png") });
    await chat.waitForAnswerEnd();
    await chat.showTokens();
    await chat.tokens().and(page.locator("[data-origin=cloud]")).first().click();
    await page.screenshot({ path: path.join(artifactsDir, "dark-inspector.png") });
    await page.emulateMedia({ colorScheme: "light" });
  });

  it("a conversation survives a reload and a restart of the Node process", async () => {
    const titles = await chat.conversationTitles();
    const answers = await chat.answers.count();
    const origins = await chat.originCounts(chat.answers.nth(1));
    await page.reload();
    await chat.open(web.url);
    expect(await chat.conversationTitles()).toEqual(titles);
    expect(await chat.answers.count()).toBe(answers);

    // SIGKILL: nothing gets a chance to flush; what was saved must be intact
    await kill(web.child, "SIGKILL");
    web = await startWeb({ dataDir, slm: fixtures.storiesSlm!, cloud });
    await chat.open(web.url);
    expect(await chat.conversationTitles()).toEqual(titles);
    expect(await chat.answers.count()).toBe(answers);
    await chat.answers.nth(1).getByTestId("toggle-view").click();
    expect(await chat.originCounts(chat.answers.nth(1))).toEqual(origins); // per-token origins persisted
  });

  it("the cloud killed mid-answer: the answer completes with fallback tokens, offline shows", async () => {
    await chat.newChat();
    await chat.setTau(MID_TAU);
    await chat.waitFor(async () => (await chat.cloudState()) === "online", "the cloud to be online");
    await chat.send("Once upon a time");
    await chat.waitForTokens(10);
    await kill(cloud.child);
    expect(await chat.waitForAnswerEnd()).toBe("complete");
    await chat.showTokens();
    const c = await chat.originCounts();
    expect(c.fallback).toBeGreaterThan(0);
    expect(c.local).toBeGreaterThan(0);
    await chat.waitFor(async () => (await chat.cloudState()) === "offline", "the offline indicator");
    expect(await page.getByTestId("cloud-indicator").textContent()).toContain("offline");
    await page.screenshot({ path: path.join(artifactsDir, "light-cloud-offline.png") });
  });
});

/**
 * Model output is text, never HTML that runs. The path tested is real model output: a hostile cloud
 * (hostileCloud.ts) answers every token at τ = 1 with token IDs of the stories model's own vocabulary
 * that spell out HTML, script and a javascript: link, so the text goes the way every answer goes —
 * decoder, detokeniser, token stream, store, renderer. It is checked live in the token view while it
 * streams, in the Markdown view a finished answer gets, in the token view again, and after a reload
 * (history loaded from disk: the same components). The page runs with its CSP switched off
 * (bypassCSP), so what is tested is the rendering itself: had any element been created, its handler
 * would have run — a control probe shows that it does in this page, and that the CSP stops it in a
 * normal one.
 */
const HOSTILE_TEXT = [
  `Sure: <img src=x onerror="window.pwned='img';alert(1)"> <script>window.pwned='script'</script>`,
  `<iframe srcdoc="<script>parent.pwned='iframe'</script>"></iframe> <svg onload="window.pwned='svg'"></svg>`,
  `[click me](javascript:window.pwned='link') ![leak](https://evil.example/leak.png) <b onmouseover="window.pwned='b'">bold</b>`,
].join("\n\n"); // paragraphs: the iframe line opens an HTML block that would swallow the Markdown after it
const CLOUD_TOKEN = "hostile-cloud-token-0123456789";

/** Elements and attributes model output must never produce in a region that shows it (an answer's body, the inspector). */
async function activeContent(region: Locator): Promise<string[]> {
  return region.evaluate((body) => {
    const found: string[] = [];
    for (const el of Array.from(body.querySelectorAll("*"))) {
      if (/^(IMG|SCRIPT|IFRAME|SVG|OBJECT|EMBED|B|STYLE|LINK|META|BASE|FORM|INPUT|VIDEO|AUDIO)$/i.test(el.tagName)) found.push(el.tagName);
      for (const a of el.getAttributeNames()) if (/^on/i.test(a)) found.push(`${el.tagName}[${a}]`);
      const href = el.getAttribute("href");
      if (href !== null && !/^https?:/i.test(href)) found.push(`${el.tagName}[href=${href}]`);
    }
    return found;
  });
}

describe.skipIf(!!skip)("browser mode: hostile model output and hostile settings", () => {
  let browser: Browser;
  let context: BrowserContext;
  let cloud: HostileCloud;
  let web: WebProc;
  let page: Page;
  let chat: ChatPage;
  const dialogs: string[] = [];
  const requests: string[] = [];
  const dataDir = tempDir("tandem-e2e-hostile-");

  // the flag the hostile text's handlers would set; Window has no such property in the DOM typings
  const pwned = () => page.evaluate(() => (window as unknown as { pwned?: string }).pwned ?? null);

  beforeAll(async () => {
    // the script: the hostile text as token IDs of the device model's own vocabulary
    const slm = await LocalModel.load(fixtures.storiesSlm!, { contextSize: 512 });
    const script = slm.model.tokenize(HOSTILE_TEXT, false);
    expect(slm.detokenize(script)).toBe(HOSTILE_TEXT); // the vocabulary can spell it exactly
    cloud = await startHostileCloud({ device: slm.identity, script, eos: slm.model.tokens.eos!, token: CLOUD_TOKEN });
    await slm.dispose();
    // a conversation file damaged before the app starts
    mkdirSync(path.join(dataDir, "conversations"), { recursive: true });
    writeFileSync(path.join(dataDir, "conversations", "damaged.json"), '{"version":1,"conversation":{"id":"damaged","mess');
    [browser, web] = await Promise.all([
      launchChromium(),
      startWeb({ dataDir, slm: fixtures.storiesSlm!, cloud, tau: 1, paceMs: 10, maxTokens: script.length + 40 }),
    ]);
    context = await browser.newContext({ viewport: { width: 1360, height: 860 }, bypassCSP: true });
    page = await context.newPage();
    page.on("pageerror", (e) => console.error("page error:", e));
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on("request", (r) => requests.push(r.url()));
    chat = new ChatPage(page);
    await chat.open(web.url);
  });

  afterAll(async () => {
    await browser?.close();
    if (web) await kill(web.child, "SIGTERM");
    await cloud?.close();
  });

  it("a damaged conversation file found at start: a notice says it was set aside; the app works", async () => {
    // the notice comes with the engine's first snapshot: wait for it rather than read the page at once
    const setAside = /The conversation file damaged\.json could not be read \(not valid JSON.*moved aside to .*damaged\.json\.corrupt-\d+/;
    await chat.waitFor(async () => setAside.test((await chat.notices()).join("\n")), "the set-aside notice");
    await chat.waitFor(async () => (await chat.cloudState()) === "online", "the hostile cloud to be online");
  });

  it("model output with HTML, script and a javascript: link renders as inert text: streaming, Markdown, tokens, after a reload", async () => {
    await chat.newChat();
    await chat.send("Say something");
    // live, in the token view
    await chat.waitForTokens(80);
    expect(await chat.lastAnswer().getAttribute("data-status")).toBe("streaming");
    expect(await activeContent(chat.lastAnswer().locator(".answer-body"))).toEqual([]);
    expect(await chat.waitForAnswerEnd()).toBe("complete");
    expect(cloud.calls()).toBeGreaterThan(200); // the text came from the cloud, token by token

    const checkMarkdown = async () => {
      const body = chat.lastAnswer().getByTestId("markdown");
      await body.waitFor();
      const text = (await body.textContent()) ?? "";
      // raw HTML is shown as the characters the model wrote
      for (const s of [
        `<img src=x onerror="window.pwned='img';alert(1)">`,
        `<script>window.pwned='script'</script>`,
        `<iframe srcdoc=`,
        `<svg onload=`,
      ])
        expect(text).toContain(s);
      expect(text).toContain("[image: leak]");
      expect(await activeContent(chat.lastAnswer().locator(".answer-body"))).toEqual([]);
      // the javascript: link lost its target: clicking its text does nothing
      await body.getByText("click me").click();
      expect(page.url()).toBe(web.url);
    };
    const checkTokens = async () => {
      await chat.showTokens();
      const text = (await chat.lastAnswer().getByTestId("tokens").textContent()) ?? "";
      expect(text.trimStart()).toBe(HOSTILE_TEXT);
      expect(await activeContent(chat.lastAnswer().locator(".answer-body"))).toEqual([]);
      // the inspector renders a token's text too: look at it for tokens all along the answer
      const n = await chat.tokens().count();
      for (let i = 0; i < n; i += 23) {
        await chat.tokens().nth(i).hover();
        const details = page.getByTestId("token-details");
        await details.waitFor();
        expect(await activeContent(details), `inspector, token ${i}`).toEqual([]);
      }
    };

    await checkMarkdown();
    await checkTokens();
    await page.screenshot({ path: path.join(artifactsDir, "light-hostile-output.png") });
    await page.reload();
    await chat.open(web.url);
    await chat.waitFor(async () => (await chat.answers.count()) > 0, "the stored answer");
    await checkMarkdown();
    await checkTokens();

    await new Promise((r) => setTimeout(r, 300)); // an onerror would fire once the image failed to load
    expect(await pwned()).toBeNull();
    expect(dialogs).toEqual([]);
    expect(requests.filter((u) => u.includes("evil.example"))).toEqual([]);
  });

  it("control: in this page (CSP off) injected markup does run, so the checks above could fail; with the CSP on it does not", async () => {
    const probe = (p: Page) =>
      p.evaluate(async () => {
        document.body.insertAdjacentHTML("beforeend", `<img src="x-missing" onerror="window.cspProbe='ran'" hidden>`);
        await new Promise((r) => setTimeout(r, 500));
        let evalResult = "ran";
        try {
          eval("1");
        } catch (e) {
          evalResult = (e as Error).name;
        }
        return { handler: (window as unknown as { cspProbe?: string }).cspProbe ?? null, eval: evalResult };
      });
    expect(await probe(page)).toEqual({ handler: "ran", eval: "ran" });
    const normal = await browser.newPage();
    try {
      await normal.goto(web.url);
      expect(await probe(normal)).toEqual({ handler: null, eval: "EvalError" });
    } finally {
      await normal.close();
    }
  });

  it("invalid cloud settings typed in Settings: a clear error beside the form, the cloud unchanged", async () => {
    await chat.connectCloud("ftp://files.example.com/model", "");
    await chat.waitFor(
      async () => /must start with http:\/\/ or https:\/\//.test((await chat.settingsError("cloud")) ?? ""),
      "the error beside the cloud settings for ftp://",
    );
    await chat.connectCloud(cloud.url, "short");
    await chat.waitFor(
      async () => /access token is too short \(5 characters\)/.test((await chat.settingsError("cloud")) ?? ""),
      "the error beside the cloud settings for a short token",
    );
    expect(await chat.cloudState()).toBe("online"); // nothing changed
    await page.screenshot({ path: path.join(artifactsDir, "light-invalid-settings.png") });
  });

  it("a token the cloud refuses (HTTP 401): offline, and the reason is shown", async () => {
    await chat.connectCloud(cloud.url, "wrong-token-0123456789abcdef");
    await chat.waitFor(async () => (await chat.cloudState()) === "offline", "the offline indicator");
    expect(await chat.cloudDetail()).toBe(
      `The cloud at ${cloud.url} refused the access token (HTTP 401): check the token given by whoever runs the server.`,
    );
    await page.screenshot({ path: path.join(artifactsDir, "light-cloud-token-refused.png") });
    await chat.connectCloud(cloud.url, CLOUD_TOKEN);
    await chat.waitFor(async () => (await chat.cloudState()) === "online", "online again with the right token");
    expect(await chat.cloudDetail()).toBeNull();
  });
});
