/** Page object for the chat window: what a person sees and does, in the UI's own terms. */
import { expect } from "vitest";
import type { Locator, Page } from "playwright-core";

export class ChatPage {
  constructor(readonly page: Page) {}

  async open(url: string): Promise<void> {
    await this.page.goto(url);
    await this.page.getByTestId("cloud-indicator").waitFor();
    await this.waitFor(async () => (await this.page.getByTestId("disconnected").count()) === 0, "the bridge to connect");
  }

  get answers(): Locator {
    return this.page.getByTestId("answer");
  }
  lastAnswer(): Locator {
    return this.answers.last();
  }
  tokens(answer = this.lastAnswer()): Locator {
    return answer.getByTestId("token");
  }

  /** New chat: an empty conversation open (one already empty is reused) and the message box focused. */
  async newChat(): Promise<void> {
    await this.page.getByTestId("new-chat").click();
    await this.waitFor(
      async () =>
        (await this.page.locator(".conv-list li.active").count()) === 1 &&
        (await this.answers.count()) === 0 &&
        (await this.page.getByTestId("user-message").count()) === 0 &&
        (await this.page.getByTestId("composer").evaluate((el) => el === document.activeElement)),
      "an empty conversation, the message box focused",
    );
  }

  /** Sets τ, switching the top bar's control from the target share to τ first when needed (as a person would). */
  async setTau(tau: number): Promise<void> {
    if ((await this.page.getByTestId("tau").getAttribute("data-mode")) !== "tau") {
      await this.page.getByTestId("mode-tau").click();
      await this.page.getByTestId("tau-slider").waitFor();
    }
    await this.page.getByTestId("tau-slider").fill(String(tau));
    await this.waitFor(async () => (await this.page.getByTestId("tau-value").textContent()) === tau.toFixed(2), `τ = ${tau}`);
  }

  /** Sets the target cloud share (0–0.5) in the top bar, switching from τ first when needed. */
  async setShare(share: number): Promise<void> {
    if ((await this.page.getByTestId("tau").getAttribute("data-mode")) !== "share") {
      await this.page.getByTestId("mode-share").click();
      await this.page.getByTestId("share-slider").waitFor();
    }
    await this.page.getByTestId("share-slider").fill(String(share));
    const shown = `${(100 * share).toFixed(share > 0 && share < 0.1 ? 1 : 0)}%`;
    await this.waitFor(async () => (await this.page.getByTestId("share-value").textContent()) === shown, `share ${shown}`);
  }

  async send(text: string): Promise<void> {
    const n = await this.answers.count();
    const box = this.page.getByTestId("composer");
    await box.fill(text);
    await box.press("Enter");
    await this.waitFor(async () => (await this.answers.count()) === n + 1, "the answer to start");
  }

  async waitForTokens(n: number, timeoutMs = 30_000): Promise<void> {
    await this.waitFor(async () => (await this.tokens().count()) >= n, `${n} tokens`, timeoutMs);
  }

  async waitForAnswerEnd(timeoutMs = 60_000): Promise<string> {
    let status = "";
    await this.waitFor(
      async () => {
        status = (await this.lastAnswer().getAttribute("data-status")) ?? "";
        return status !== "streaming";
      },
      "the answer to end",
      timeoutMs,
    );
    return status;
  }

  /** Answers show rendered Markdown (its tokens inside); switch the last one to its token source. */
  async showTokens(): Promise<void> {
    if ((await this.lastAnswer().getByTestId("tokens").count()) === 0) await this.lastAnswer().getByTestId("toggle-view").click();
    await this.lastAnswer().getByTestId("tokens").waitFor();
    await this.tokens().first().waitFor();
  }

  async originCounts(answer = this.lastAnswer()): Promise<Record<string, number>> {
    const origins = await answer.getByTestId("token").evaluateAll((els) => els.map((e) => e.getAttribute("data-origin") ?? "?"));
    const counts: Record<string, number> = { local: 0, cloud: 0, fallback: 0 };
    for (const o of origins) counts[o] = (counts[o] ?? 0) + 1;
    return counts;
  }

  /** [token index, origin] of every element standing for a token in the answer's rendered view. */
  async renderedOrigins(answer = this.lastAnswer()): Promise<[number, string][]> {
    return answer
      .getByTestId("markdown")
      .locator("[data-origin]")
      .evaluateAll((els) => els.map((e): [number, string] => [Number(e.getAttribute("data-index")), e.getAttribute("data-origin") ?? "?"]));
  }

  /** The number of tokens the answer's statistics report. */
  async statTokens(answer = this.lastAnswer()): Promise<number> {
    const m = ((await answer.getByTestId("answer-stats").textContent()) ?? "").match(/(\d+) tokens/);
    return m ? Number(m[1]) : NaN;
  }

  /** The index of the token the inspector shows, or null. */
  async inspectedIndex(): Promise<number | null> {
    const d = this.page.getByTestId("token-details");
    return (await d.count()) ? Number(await d.getAttribute("data-index")) : null;
  }

  cloudState(): Promise<string | null> {
    return this.page.getByTestId("cloud-indicator").getAttribute("data-state");
  }

  async conversationTitles(): Promise<string[]> {
    return this.page.getByTestId("conversation-item").locator(".conv-title").allTextContents();
  }

  /** Cloud settings as a person enters them: open Settings, type, Connect; waits for the call to finish. */
  async connectCloud(url: string, token: string): Promise<void> {
    await this.openSettings();
    await this.page.getByTestId("settings-kind").selectOption("tandem");
    await this.page.getByTestId("settings-url").fill(url);
    await this.page.getByTestId("settings-token").fill(token);
    const connect = this.page.getByTestId("settings-connect");
    await connect.click();
    await this.waitFor(async () => await connect.isEnabled(), "the cloud settings call to finish");
  }

  async openSettings(): Promise<void> {
    const settings = this.page.getByTestId("settings");
    if ((await settings.getAttribute("open")) === null) await settings.locator("summary").click();
    await this.page.getByTestId("settings-part-cloud").waitFor();
  }

  /** The error shown beside one part of the Settings form ("cloud", "context", "system", "model"), or null. */
  async settingsError(part: string): Promise<string | null> {
    const e = this.page.getByTestId(`settings-error-${part}`);
    return (await e.count()) ? e.textContent() : null;
  }

  /** The notices banner, one entry per notice shown. */
  async notices(): Promise<string[]> {
    const banner = this.page.getByTestId("notices");
    return (await banner.count()) ? banner.locator("> div").allTextContents() : [];
  }

  async cloudDetail(): Promise<string | null> {
    const d = this.page.getByTestId("cloud-detail");
    return (await d.count()) ? d.textContent() : null;
  }

  async waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > end) expect.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
