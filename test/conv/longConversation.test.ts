/**
 * Conversations that last (issue 14), on the real engine: the stories260K pair, one thread, a real
 * HTTP cloud token server. A 50-turn conversation ten times the window keeps answering under the
 * context policy; the cloud follows the trimmed prompt; settings survive a restart of the service.
 */
import { presetConfig } from "../../shared/sampling.js";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { Conversation } from "../../shared/bridge.js";
import { LocalModel } from "../../inference/localModel.js";
import { TandemService } from "../../electron/engine/service.js";
import { answered } from "../helpers/answered.js";
import { storiesPair } from "../helpers/pair.js";
import { noteMissingShared } from "../helpers/shared.js";

const pair = await storiesPair();
noteMissingShared("long conversation tests");

const WINDOW = 512;
const WORDS = [
  "the",
  "little",
  "girl",
  "saw",
  "a",
  "big",
  "red",
  "ball",
  "in",
  "park",
  "and",
  "she",
  "was",
  "happy",
  "dog",
  "ran",
  "home",
  "sun",
];
/** A user message of `n` words, different for each turn. */
const message = (turn: number, n: number) =>
  Array.from({ length: n }, (_, k) => WORDS[(turn * 7 + k * 5 + (k >> 3)) % WORDS.length]).join(" ") + ". ";

/** The SLM inside the service (the test reads its KV cache and its count of evaluated tokens). */
const slmOf = (s: TandemService): LocalModel => (s as unknown as { slm: LocalModel }).slm;

/** What the policy should have sent: the system prompt, then the messages it kept (no chat template: concatenated). */
function expectedPrompt(slm: LocalModel, conv: Conversation, system: string, answerIndex: number): number[] {
  const dropped = conv.messages[answerIndex].context!.droppedMessages;
  return slm.tokenizeText([system, ...conv.messages.slice(dropped, answerIndex).map((m) => m.content)].join(""));
}

describe.skipIf(!pair)("a conversation longer than the window (real engine)", () => {
  let server: CloudServer;
  const token = randomBytes(12).toString("hex");
  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair!.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
  });
  afterAll(async () => server?.close());

  it("50 turns, ten windows of text: every turn answers, keeps the system prompt and the newest turns, evaluates at most one window", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-long-"));
    const service = await TandemService.start({ dataDir, slm: pair!.slm, tau: 0, maxTokens: 40, contextSize: WINDOW, selfDistill: false });
    try {
      const slm = slmOf(service);
      expect(slm.contextSize).toBe(WINDOW);
      // a new data folder: the engine first scores a short local answer to calibrate the cloud share
      // (cloudControls.ts), once, at load; the turns are measured after it
      for (let i = 0; i < 200 && (await service.cloudControl({})).calibration.scores === 0; i++)
        await new Promise((r) => setTimeout(r, 25));
      const system = "A story for a child. ";
      const c = await service.createConversation({});
      await service.setSystemPrompt({ conversationId: c.id, systemPrompt: system });
      let slides = 0;
      let reusedTurns = 0;
      let previousUsed = 0;
      for (let turn = 0; turn < 50; turn++) {
        const before = slm.evaluatedTokens;
        const heldBefore = [...slm.history];
        const done = answered(service, `t${turn}`);
        const h = await service.send({ requestId: `t${turn}`, conversationId: c.id, text: message(turn, 60) });
        const end = await done;
        expect(end.type, `turn ${turn}`).toBe("answer-end");
        const evaluated = slm.evaluatedTokens - before;
        expect(evaluated, `turn ${turn} evaluated`).toBeLessThanOrEqual(WINDOW);
        const conv = await service.getConversation({ id: c.id });
        const i = conv.messages.findIndex((m) => m.id === h.messageId);
        const msg = conv.messages[i];
        expect(msg.tokens!.length, `turn ${turn} answer`).toBeGreaterThan(0);
        const usage = msg.context!;
        expect(usage.used + usage.reserved).toBeLessThanOrEqual(WINDOW);
        expect(usage.truncated).toBe(false);
        // the newest user message is read, and the KV cache holds exactly system prompt + kept turns + answer
        expect(usage.droppedMessages).toBeLessThanOrEqual(i - 1);
        const prompt = expectedPrompt(slm, conv, system, i);
        expect(prompt.length).toBe(usage.used);
        expect([...slm.history.slice(0, prompt.length)]).toEqual(prompt);
        // then the answer (its last token is not evaluated when the answer ends at max-tokens: nobody reads the step)
        const answerTokens = msg.tokens!.map((t) => t.tokenId);
        const held = [...slm.history.slice(prompt.length)];
        expect(held.length).toBeGreaterThanOrEqual(answerTokens.length - 1);
        expect(held).toEqual(answerTokens.slice(0, held.length));
        // what the KV cache already held of this prompt is not evaluated again
        let common = 0;
        while (common < heldBefore.length && heldBefore[common] === prompt[common]) common++;
        expect(evaluated, `turn ${turn} evaluated`).toBeLessThanOrEqual(
          prompt.length - Math.min(common, prompt.length - 1) + answerTokens.length,
        );
        if (usage.slid) slides++;
        // a turn that did not slide reuses the whole previous prompt (and all but the tail of its answer)
        else if (turn > 0) {
          expect(common, `turn ${turn} reused`).toBeGreaterThanOrEqual(previousUsed);
          reusedTurns++;
        }
        previousUsed = usage.used;
      }
      const conv = await service.getConversation({ id: c.id });
      const text = slm.tokenizeText(conv.messages.map((m) => m.content).join("")).length;
      expect(text).toBeGreaterThanOrEqual(10 * WINDOW);
      // the window moved several times, and most turns reused the cache
      expect(slides).toBeGreaterThanOrEqual(5);
      expect(reusedTurns).toBeGreaterThan(slides);
    } finally {
      await service.close();
    }
  }, 300_000);

  it("a single paste longer than the window: its end is read, the answer comes, and a notice says so", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-paste-"));
    const service = await TandemService.start({ dataDir, slm: pair!.slm, tau: 0, maxTokens: 20, contextSize: WINDOW, selfDistill: false });
    const notices: string[] = [];
    service.subscribe((e) => e.type === "notice" && notices.push(e.message));
    try {
      const slm = slmOf(service);
      const c = await service.createConversation({});
      const paste = Array.from({ length: 12 }, (_, i) => message(i, 60)).join("");
      expect(slm.tokenizeText(paste).length).toBeGreaterThan(2 * WINDOW);
      const done = answered(service, "p1");
      const h = await service.send({ requestId: "p1", conversationId: c.id, text: paste });
      expect((await done).type).toBe("answer-end");
      const msg = (await service.getConversation({ id: c.id })).messages.find((m) => m.id === h.messageId)!;
      expect(msg.context).toMatchObject({ truncated: true, window: WINDOW });
      expect(msg.context!.used + msg.context!.reserved).toBeLessThanOrEqual(WINDOW);
      expect(msg.tokens!.length).toBeGreaterThan(0);
      expect(notices.join()).toMatch(/longer than the 512-token context window: only its end was read/);
      // the stored message is whole; only what the model read was cut, from the end of the paste
      const stored = (await service.getConversation({ id: c.id })).messages[0].content;
      expect(stored).toBe(paste);
      expect(slm.detokenize([...slm.history.slice(0, msg.context!.used)])).toContain(paste.slice(-200).trim().slice(0, 100));
    } finally {
      await service.close();
    }
  }, 120_000);

  it("the cloud follows the trimmed prompt: every cloud token is the LLM's greedy choice after it", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-long-cloud-"));
    const service = await TandemService.start({
      dataDir,
      slm: pair!.slm,
      cloud: { kind: "tandem", url: server.url, token },
      tau: 0.5,
      maxTokens: 40,
      contextSize: WINDOW,
      selfDistill: false,
      sampling: presetConfig("precise"), // greedy: each cloud token is checked against the LLM's argmax
    });
    const llm = await LocalModel.load(pair!.llm, { contextSize: 2048 });
    try {
      expect((await service.cloudStatus({})).state).toBe("online");
      const slm = slmOf(service);
      const c = await service.createConversation({});
      let cloudTokens = 0;
      let slides = 0;
      for (let turn = 0; turn < 24; turn++) {
        const done = answered(service, `c${turn}`);
        const h = await service.send({ requestId: `c${turn}`, conversationId: c.id, text: message(turn, 60) });
        expect((await done).type).toBe("answer-end");
        const conv = await service.getConversation({ id: c.id });
        const i = conv.messages.findIndex((m) => m.id === h.messageId);
        const msg = conv.messages[i];
        if (msg.context!.slid) slides++;
        const prompt = expectedPrompt(slm, conv, "", i);
        const answer = msg.tokens!.map((t) => t.tokenId);
        await llm.clear();
        const greedy = await llm.evaluateAll([...prompt, ...answer], { top1Prob: false, topK: 0, hidden: false });
        msg.tokens!.forEach((t, k) => {
          expect(t.origin, `turn ${turn} token ${k}`).not.toBe("fallback");
          if (t.origin !== "cloud") return;
          cloudTokens++;
          expect(t.tokenId, `turn ${turn} token ${k}`).toBe(greedy[prompt.length - 1 + k].tokenId);
        });
      }
      expect(slides).toBeGreaterThanOrEqual(2);
      expect(cloudTokens).toBeGreaterThan(50);
    } finally {
      await llm.dispose();
      await service.close();
    }
  }, 300_000);

  it("τ, the cloud, the theme, the context size and the system prompt survive a restart", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-restart-"));
    const first = await TandemService.start({ dataDir, selfDistill: false });
    await first.openLocalModel({ path: pair!.slm }); // the user's choice of model is remembered
    // the model's own context by default (GGUF context_length: 2048 here), not a fixed size
    expect((await first.getSettings({})).loadedContextSize).toBe(2048);
    await first.setTau({ tau: 0.3 });
    await first.setCloudSettings({ kind: "tandem", url: server.url, token });
    const view = await first.updateSettings({ theme: "dark", contextSize: 1024, systemPrompt: "Be kind." });
    expect(view).toMatchObject({ tau: 0.3, theme: "dark", contextSize: 1024, loadedContextSize: 1024, systemPrompt: "Be kind." });
    await expect(first.updateSettings({ theme: "dark", contextSize: 7 })).rejects.toThrow(/context size/);
    await first.close();

    // no flags: the saved values
    const second = await TandemService.start({ dataDir, selfDistill: false });
    try {
      const s = await second.getSettings({});
      expect(s).toMatchObject({
        tau: 0.3,
        theme: "dark",
        contextSize: 1024,
        loadedContextSize: 1024,
        systemPrompt: "Be kind.",
        slm: pair!.slm,
      });
      expect(s.cloud).toEqual({ kind: "tandem", url: server.url, hasToken: true });
      expect((await second.snapshot({})).tau).toBe(0.3);
      expect((await second.cloudStatus({})).state).toBe("online"); // the saved token works
    } finally {
      await second.close();
    }
    // a flag overrides for its run only
    const third = await TandemService.start({ dataDir, tau: 0.9, contextSize: 768, selfDistill: false });
    try {
      expect(await third.getSettings({})).toMatchObject({ tau: 0.9, loadedContextSize: 768, theme: "dark" });
    } finally {
      await third.close();
    }
  }, 120_000);
});
