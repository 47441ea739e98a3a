/**
 * Sampling in the app (issue 13), in Chromium against the real engine (the stories260K SLM, one thread,
 * no cloud, so every token is the device's and nothing depends on a network deadline): the sampling
 * panel at 1440×900 and 800×600 in both themes, its one-line explanations, an error beside the field
 * it belongs to, WCAG AA contrast with it open; then what a person does with it — the panel changes
 * the answer, Regenerate draws a new one (a new seed each answer), and an answer's stored seed,
 * applied as a fixed seed, gives that answer again. Screenshots in e2e/artifacts/sampling-*.png.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { ensureFixtures } from "../models/fixtures.js";
import { artifactsDir, kill, launchChromium, missingForE2e, startWeb, tempDir, type WebProc } from "./harness.js";
import { ChatPage } from "./pages/chatPage.js";

const missing = missingForE2e();
const fixtures = await ensureFixtures();
const skip = missing ?? (fixtures.storiesSlm ? null : "the stories260K SLM is missing");
if (skip) console.warn(`[skip] sampling e2e: ${skip}`);
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const VIEWS = [
  { name: "wide-light", width: 1440, height: 900, scheme: "light" },
  { name: "wide-dark", width: 1440, height: 900, scheme: "dark" },
  { name: "narrow-light", width: 800, height: 600, scheme: "light" },
  { name: "narrow-dark", width: 800, height: 600, scheme: "dark" },
] as const;

async function axeViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ content: axeSource });
  return page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: { run(c: Document, o: object): Promise<{ violations: { id: string; nodes: { target: string[] }[] }[] }> };
      }
    ).axe;
    const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } });
    return r.violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(" ")}`));
  });
}

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(artifactsDir, `sampling-${name}.png`) });

/** The sampling panel as a person uses it. */
class SamplingPanel {
  constructor(
    readonly page: Page,
    readonly chat: ChatPage,
  ) {}
  get panel() {
    return this.page.getByTestId("sampling-panel");
  }
  async open(): Promise<void> {
    if ((await this.panel.count()) === 0) await this.page.getByTestId("sampling-button").click();
    await this.panel.waitFor();
  }
  async preset(name: "precise" | "balanced" | "creative"): Promise<void> {
    await this.page.getByTestId(`preset-${name}`).check();
  }
  async apply(): Promise<void> {
    await this.page.getByTestId("sampling-apply").click();
    await this.chat.waitFor(async () => (await this.panel.count()) === 0, "the panel to close once applied");
  }
  summary(): Promise<string | null> {
    return this.page.getByTestId("sampling-summary").textContent();
  }
}

describe.skipIf(!!skip)("sampling: the panel, Regenerate and seeds (local model)", () => {
  let browser: Browser;
  let web: WebProc;
  const dataDir = tempDir("tandem-e2e-sampling-");

  beforeAll(async () => {
    browser = await launchChromium();
    web = await startWeb({ dataDir, slm: fixtures.storiesSlm!, paceMs: 5, maxTokens: 48 });
  });
  afterAll(async () => {
    await browser?.close();
    if (web) await kill(web.child, "SIGTERM");
  });

  async function openPage(view: (typeof VIEWS)[number] = VIEWS[0]) {
    const context = await browser.newContext({
      viewport: { width: view.width, height: view.height },
      colorScheme: view.scheme,
      bypassCSP: true, // only so that axe-core can be injected
    });
    const page = await context.newPage();
    const logged: string[] = [];
    page.on("console", (m) => (m.type() === "error" || m.type() === "warning") && logged.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logged.push(`pageerror: ${e.message}`));
    const chat = new ChatPage(page);
    await chat.open(web.url);
    return { page, chat, sampling: new SamplingPanel(page, chat), logged, close: () => context.close() };
  }

  const answerText = (chat: ChatPage) => chat.lastAnswer().getByTestId("markdown").textContent();

  async function regenerate(chat: ChatPage): Promise<string> {
    const before = await chat.lastAnswer().getAttribute("data-status");
    expect(before).not.toBe("streaming");
    await chat.page.getByTestId("regenerate").last().click();
    await chat.waitFor(async () => (await chat.lastAnswer().getAttribute("data-status")) === "streaming", "the new answer to start");
    expect(await chat.waitForAnswerEnd()).toBe("complete");
    return (await answerText(chat)) ?? "";
  }

  /** The seed the last answer was drawn with, as the inspector shows it. */
  async function inspectedSeed(chat: ChatPage, shotName?: string): Promise<{ text: string; seed: number }> {
    await chat.showTokens();
    await chat.tokens().first().click();
    const line = chat.page.getByTestId("insp-sampling");
    await line.waitFor();
    const text = (await line.textContent()) ?? "";
    // a sampled answer: the inspector gives the small model's probability of its draw
    expect(await chat.page.getByTestId("insp-slm-prob").textContent()).toMatch(/^p [01]\.\d{3} for /);
    if (shotName) await shot(chat.page, shotName);
    await chat.page.keyboard.press("Escape");
    await chat.lastAnswer().getByTestId("toggle-view").click(); // back to the rendered answer
    return { text, seed: Number(/seed (\d+)$/.exec(text)?.[1]) };
  }

  for (const view of VIEWS) {
    it(`${view.name}: the panel explains every field, shows an error beside its field, and passes the contrast check`, async () => {
      const { page, chat, sampling, logged, close } = await openPage(view);
      await chat.newChat();
      await chat.send("Once upon a time");
      expect(await chat.waitForAnswerEnd()).toBe("complete");
      expect(await sampling.summary()).toMatch(/^Balanced · new seed each answer \(app default\)$/);
      await sampling.open();
      await page.locator(".sampling-advanced summary").click();
      for (const key of ["temperature", "topK", "topP", "minP", "repeatPenalty", "repeatLastN", "presencePenalty", "frequencyPenalty"])
        expect(await page.getByTestId(`sampling-${key}`).isVisible(), key).toBe(true);
      expect(await sampling.panel.textContent()).toMatch(/How adventurous each word is/);
      await shot(page, `${view.name}-panel`);
      expect(await axeViolations(page)).toEqual([]);

      // an impossible temperature: the error beside it, Apply disabled, the preset now Custom
      await page.getByTestId("sampling-temperature").fill("9");
      await page.getByTestId("sampling-temperature-error").waitFor();
      expect(await page.getByTestId("sampling-temperature-error").textContent()).toBe("From 0 to 5.");
      expect(await page.getByTestId("sampling-apply").isDisabled()).toBe(true);
      expect(await page.getByTestId("preset-custom").isChecked()).toBe(true);
      await page.getByTestId("seed-fixed").check();
      expect(await page.getByTestId("sampling-seed-error").textContent()).toMatch(/whole number/);
      await shot(page, `${view.name}-errors`);
      await page.getByTestId("sampling-temperature").fill("0.9");
      await page.getByTestId("sampling-seed").fill("42");
      expect(await page.getByTestId("sampling-apply").isEnabled()).toBe(true);
      await sampling.apply();
      expect(await sampling.summary()).toBe(
        "Custom (temperature 0.9 · top-k 20 · top-p 0.8 · repetition penalty 1.05 over 64 tokens) · seed 42",
      );
      expect(logged).toEqual([]);
      await close();
    });
  }

  it("the panel changes the answer, Regenerate draws a new one, and a stored seed reproduces an answer", async () => {
    const { chat, sampling, logged, close } = await openPage();
    await chat.newChat();
    await sampling.open();
    await sampling.preset("precise");
    await sampling.apply();
    expect(await sampling.summary()).toBe("Precise · new seed each answer");
    await chat.send("Once upon a time");
    expect(await chat.waitForAnswerEnd()).toBe("complete");
    const greedy = (await answerText(chat)) ?? "";
    expect(greedy.length).toBeGreaterThan(20);
    expect(await regenerate(chat), "Precise: Regenerate gives the same answer").toBe(greedy);

    // the panel changes the answer: Creative, a new seed each answer
    await sampling.open();
    await sampling.preset("creative");
    await sampling.apply();
    const first = await regenerate(chat);
    expect(first, "Creative differs from the greedy answer").not.toBe(greedy);
    const a = await inspectedSeed(chat, "wide-light-inspector");
    expect(a.text).toMatch(
      /^Creative: temperature 1 · top-k 100 · top-p 0\.95 · min-p 0\.05 · repetition penalty 1\.1 over 64 tokens · seed \d+$/,
    );

    // Regenerate draws a new seed, and a different answer
    const second = await regenerate(chat);
    const b = await inspectedSeed(chat);
    expect(b.seed).not.toBe(a.seed);
    expect(second).not.toBe(first);

    // the stored seed, as a fixed seed, gives that answer again
    await sampling.open();
    await chat.page.getByTestId("sampling-use-last").click();
    expect(await chat.page.getByTestId("sampling-seed").inputValue()).toBe(String(b.seed));
    await sampling.apply();
    expect(await sampling.summary()).toBe(`Creative · seed ${b.seed}`);
    expect(await regenerate(chat), "the stored seed reproduces the answer").toBe(second);
    expect(await regenerate(chat), "and again").toBe(second);
    expect(logged).toEqual([]);
    await close();
  });
});
