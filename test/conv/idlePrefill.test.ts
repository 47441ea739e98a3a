/**
 * The idle pre-slide (idlePrefill.ts), on the real engine: the stories260K SLM, one thread. When an
 * answer ends and the next turn must slide the window, the slide is planned at once and the kept
 * prefix is evaluated while the user types; the next answer then evaluates only its new message and
 * writes the tokens a cold cache writes (greedy). A new answer, or the inspector, started meanwhile
 * stops the idle work at its chunk.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoredMessage } from "../../shared/bridge.js";
import type { ChatMessage } from "../../shared/chat.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { presetConfig } from "../../shared/sampling.js";
import { LocalModel } from "../../inference/localModel.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { planNextTurn, planPrompt } from "../../electron/engine/conversationPrompt.js";
import type { SlideAhead } from "../../electron/engine/contextWindow.js";
import { PREFILL_CHUNK, prefill } from "../../electron/engine/idlePrefill.js";
import type { EngineState } from "../../electron/engine/engineState.js";
import { inspectorCandidates } from "../../electron/engine/inspectorCost.js";
import { TandemService } from "../../electron/engine/service.js";
import { answered } from "../helpers/answered.js";
import { storiesPair } from "../helpers/pair.js";
import { noteMissingShared } from "../helpers/shared.js";

const pair = await storiesPair();
noteMissingShared("idle pre-slide tests");

const WINDOW = 512;
const SYSTEM = "A story for a child. ";
const WORDS = "the little girl saw a big red ball in the park and she was happy dog ran home sun".split(" ");
const message = (turn: number, n = 30) =>
  Array.from({ length: n }, (_, k) => WORDS[(turn * 7 + k * 5 + (k >> 3)) % WORDS.length]).join(" ") + ". ";

/** An answer at τ = 0 (local only): its tokens, and the tokens the SLM evaluated up to its first token. */
async function decode(slm: LocalModel, prompt: number[], opts: { sampling?: StoredMessage["sampling"]; topK?: number } = {}) {
  const before = slm.evaluatedTokens;
  let atFirst = -1;
  const answer = new CollaborativeDecoder(slm, new ConfidenceRouter(), null).generate(prompt, { tau: 0, maxTokens: 40, ...opts });
  const tokens: number[] = [];
  for await (const e of answer) {
    if (atFirst < 0) atFirst = slm.evaluatedTokens - before;
    tokens.push(e.tokenId);
  }
  return { tokens, atFirst, text: (await answer.summary).text };
}

describe.skipIf(!pair)("idle pre-slide (real inference)", () => {
  let warm: LocalModel;
  let cold: LocalModel;
  beforeAll(async () => {
    // as the engine loads its SLM (the hidden state is free, and what a learned router reads)
    warm = await LocalModel.load(pair!.slm, { contextSize: WINDOW, hiddenState: true });
    cold = await LocalModel.load(pair!.slm, { contextSize: WINDOW, hiddenState: true });
  });
  afterAll(async () => {
    await warm?.dispose();
    await cold?.dispose();
  });

  it("the next prompt starts with the planned prefix; after a pre-slide the answer evaluates only its new message, and writes what a cold cache writes", async () => {
    const conv = { system: SYSTEM, maxTokens: 40 };
    const turns: ChatMessage[] = [];
    let keepFrom = 0;
    let ahead: SlideAhead | null = null;
    let prefix: number[] = [];
    for (let turn = 0; turn < 20 && !ahead; turn++) {
      turns.push({ role: "user", content: message(turn) });
      const { tokens, plan } = planPrompt(warm, { ...conv, turns, keepFrom });
      // between slides too, the start known when the last answer ended is where this prompt starts
      expect(tokens.slice(0, prefix.length), `turn ${turn}`).toEqual(prefix);
      turns.push({ role: "assistant", content: (await decode(warm, tokens)).text });
      keepFrom = plan.keepFrom;
      ({ slide: ahead, prefix } = planNextTurn(warm, { ...conv, turns, keepFrom }));
    }
    expect(ahead, "a slide is planned within 20 turns of a 512-token window").not.toBeNull();
    expect(ahead!.keepFrom).toBeGreaterThan(keepFrom);
    const idle = await prefill(warm, prefix);
    expect(idle.complete).toBe(true);
    expect(idle.evaluated).toBeGreaterThan(0);
    expect([...warm.history]).toEqual(prefix);

    const text = message(99);
    const next = [...turns, { role: "user", content: text } as ChatMessage];
    const { tokens, plan } = planPrompt(warm, { ...conv, turns: next, keepFrom, preSlid: ahead! });
    expect(plan.keepFrom).toBe(ahead!.keepFrom);
    expect(plan.usage.slid).toBe(true);
    expect(tokens.slice(0, prefix.length)).toEqual(prefix);
    const w = await decode(warm, tokens);
    // the new message (with no chat template, its tokens and the one its start may merge with)
    expect(w.atFirst).toBe(tokens.length - prefix.length);
    expect(w.atFirst).toBeLessThanOrEqual(warm.tokenizeText(text).length + 2);
    await cold.clear();
    const c = await decode(cold, tokens);
    expect(c.atFirst).toBe(tokens.length);
    expect(w.tokens).toEqual(c.tokens);
  }, 120_000);

  it("in the engine: planned when the answer ends, evaluated while idle, given up at its chunk by a new answer or the inspector", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-idle-"));
    const service = await TandemService.start({
      dataDir,
      slm: pair!.slm,
      tau: 0,
      maxTokens: 40,
      contextSize: WINDOW,
      selfDistill: false,
      // greedy: the same conversation every run, and an answer compared token for token with a cold
      // cache (drawn tokens can flip on llama.cpp's rounding, which depends on how a prompt was batched:
      // the policy's reuse of the cache between slides does that too)
      sampling: presetConfig("precise"),
    });
    const s = (service as unknown as { s: EngineState }).s;
    const slm = s.slm!;
    try {
      for (let i = 0; i < 200 && (await service.cloudControl({})).calibration.scores === 0; i++) await sleep(25);
      const c = await service.createConversation({});
      await service.setSystemPrompt({ conversationId: c.id, systemPrompt: SYSTEM });
      let turn = 0;
      /** sends the next message; resolves with the answer, what the SLM evaluated and what its cache held before */
      const send = async (beforeSend: () => Promise<void> = async () => {}) => {
        await beforeSend();
        const held = [...slm.history];
        const before = slm.evaluatedTokens;
        const done = answered(service, `t${turn}`);
        const h = await service.send({ requestId: `t${turn}`, conversationId: c.id, text: message(turn) });
        turn++;
        expect((await done).type).toBe("answer-end");
        const evaluated = slm.evaluatedTokens - before;
        const conv = await service.getConversation({ id: c.id });
        const i = conv.messages.findIndex((m) => m.id === h.messageId);
        return { conv, msg: conv.messages[i], i, held, evaluated };
      };
      /** sends until the answer's end plans a slide for the next turn */
      const untilSlidePlanned = async () => {
        for (let k = 0; k < 20; k++) {
          await send();
          const conv = s.store.get(c.id);
          if (s.idle.slideFor(conv)) return s.idle.slideFor(conv)!;
        }
        throw new Error("no slide planned in 20 turns");
      };

      // 1. the idle work completes; the next answer reads the pre-slid prompt and evaluates only its message
      let planned = await untilSlidePlanned();
      await s.idle.settled();
      expect(s.idle.totals.completed).toBe(1);
      let r = await send();
      expect(r.msg.context).toMatchObject({ slid: true, truncated: false, droppedMessages: planned.keepFrom });
      let prompt = slm.tokenizeText([SYSTEM, ...r.conv.messages.slice(planned.keepFrom, r.i).map((m) => m.content)].join(""));
      expect(prompt.length).toBe(r.msg.context!.used);
      // what it evaluated: the prompt past what the cache held of it (all but the message), then one step per answer token kept
      const held = commonPrefix(r.held, prompt);
      const steps = slm.history.length - prompt.length;
      expect(r.evaluated - steps).toBe(prompt.length - held);
      expect(prompt.length - held).toBeLessThanOrEqual(slm.tokenizeText(message(turn - 1)).length + 2);
      await expectColdReplay(r.msg, prompt);

      /** a spy on the real SLM: resolves as the idle work's first chunk starts evaluating */
      const idleChunk = () =>
        new Promise<void>((resolve) => {
          const begin = slm.begin.bind(slm);
          slm.begin = (prompt, needs) => {
            if (s.active == null) {
              slm.begin = begin;
              resolve();
            }
            return begin(prompt, needs);
          };
        });
      const expectGaveWay = (before: typeof s.idle.totals) => {
        expect(s.idle.totals.stopped).toBe(before.stopped + 1);
        expect(s.idle.totals.completed).toBe(before.completed);
        expect(s.idle.totals.tokens - before.tokens).toBeGreaterThan(0);
        expect(s.idle.totals.tokens - before.tokens).toBeLessThanOrEqual(PREFILL_CHUNK);
      };

      // 2. an answer sent while the idle work runs: the idle work stops after the chunk it is evaluating
      planned = await untilSlidePlanned();
      let idleBefore = { ...s.idle.totals };
      const chunk = idleChunk();
      r = await send(() => chunk);
      expectGaveWay(idleBefore);
      expect(r.msg.context).toMatchObject({ slid: true, droppedMessages: planned.keepFrom });
      prompt = slm.tokenizeText([SYSTEM, ...r.conv.messages.slice(planned.keepFrom, r.i).map((m) => m.content)].join(""));
      await expectColdReplay(r.msg, prompt);

      // 3. the inspector asking for candidates meanwhile: the same
      await untilSlidePlanned();
      idleBefore = { ...s.idle.totals };
      await idleChunk();
      // (the first answer: the inspector re-reads an answer's whole history, not the window's)
      const first = s.store.get(c.id).messages[1];
      const candidates = await service.candidates({ conversationId: c.id, messageId: first.id, index: 0 });
      expectGaveWay(idleBefore);
      expect(candidates.candidates.length).toBeGreaterThan(0);
    } finally {
      await service.close();
    }
  }, 300_000);

  /** The answer's tokens are those the SLM writes from a cold cache with the same prompt and sampling. */
  async function expectColdReplay(msg: StoredMessage, prompt: number[]) {
    await cold.clear();
    const replay = await decode(cold, prompt, { sampling: msg.sampling, topK: inspectorCandidates(cold.vocabSize) });
    expect(replay.tokens).toEqual(msg.tokens!.map((t) => t.tokenId));
  }
});

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
