/**
 * Bench figure (e): time to first token over a 30-turn conversation several times longer than the
 * SLM's window, the app's context policy (contextWindow.ts: the window slides by half its budget,
 * the KV cache is reused between slides, and a slide the next turn needs is made when an answer
 * ends, and the next prompt's known start evaluated while the user types: idlePrefill.ts) against re-evaluating the
 * whole prompt every turn (the same prompts, the cache emptied first). The idle work is awaited
 * between turns, outside the clock, and reported on its own (tokens, ms). Also reported: sliding by just enough every turn, with the
 * cache kept (its prefix changes at every turn once the window is full, so little is reused).
 * The variants run interleaved, turn by turn, each on its own copy of the SLM; local only (τ = 0):
 * the time to first token is the SLM's prompt evaluation plus one step.
 */
import type { ChatMessage } from "../shared/chat.js";
import { LocalModel } from "../inference/localModel.js";
import { ConfidenceRouter } from "../shared/router.js";
import { CollaborativeDecoder } from "../electron/engine/decoder.js";
import { planNextTurn, planPrompt } from "../electron/engine/conversationPrompt.js";
import type { SlideAhead } from "../electron/engine/contextWindow.js";
import { prefill } from "../electron/engine/idlePrefill.js";
import { median, type Figure } from "./stats.js";

interface Variant {
  name: string;
  slm: LocalModel;
  /** empty the KV cache before each turn */
  clear: boolean;
  slideKeep?: number;
  /** plan the next turn's slide when an answer ends (the app's policy); `idle`: and pre-fill it */
  ahead?: { idle: boolean };
  preSlid?: SlideAhead;
  turns: ChatMessage[];
  keepFrom: number;
  ttftMs: number[];
  evaluated: number[];
  idleMs: number[];
  idleTokens: number[];
  idleSlides: number;
}

const SYSTEM = "A story. ";

const WORDS = "the little girl saw a big red ball in the park and she was happy dog ran home sun tree bird sang".split(" ");
const userLine = (i: number, n: number) =>
  Array.from({ length: n }, (_, k) => WORDS[(i * 11 + k * 7 + (k >> 2)) % WORDS.length]).join(" ") + ". ";

async function turn(v: Variant, text: string, maxTokens: number): Promise<void> {
  const t0 = performance.now();
  const turns: ChatMessage[] = [...v.turns, { role: "user", content: text }];
  const conv = { system: SYSTEM, keepFrom: v.keepFrom, maxTokens, slideKeep: v.slideKeep };
  const { tokens, plan } = planPrompt(v.slm, { ...conv, turns, preSlid: v.preSlid });
  if (v.clear) await v.slm.clear();
  const before = v.slm.evaluatedTokens;
  const answer = new CollaborativeDecoder(v.slm, new ConfidenceRouter(), null).generate(tokens, { tau: 0, maxTokens });
  let first = true;
  for await (const _ of answer) {
    if (first) {
      v.ttftMs.push(performance.now() - t0);
      v.evaluated.push(v.slm.evaluatedTokens - before);
      first = false;
    }
  }
  v.turns = [...turns, { role: "assistant", content: (await answer.summary).text }];
  v.keepFrom = plan.keepFrom;
  if (v.ahead) await slideAhead(v, maxTokens);
}

/** When the answer has ended: the next turn's slide, if it needs one, and (idle) its prompt's known start evaluated. */
async function slideAhead(v: Variant, maxTokens: number): Promise<void> {
  const next = planNextTurn(v.slm, { system: SYSTEM, turns: v.turns, keepFrom: v.keepFrom, maxTokens, slideKeep: v.slideKeep });
  v.preSlid = next.slide ?? undefined;
  if (!v.ahead?.idle) return;
  const t0 = performance.now();
  const r = await prefill(v.slm, next.prefix);
  v.idleMs.push(performance.now() - t0);
  v.idleTokens.push(r.evaluated);
  if (next.slide) v.idleSlides++;
}

export async function figureE(
  slmFile: string,
  opts: { turns: number; window: number; words: number; maxTokens: number },
  figures: Figure[],
  log: (...a: unknown[]) => void,
): Promise<Record<string, unknown>> {
  log(`\n(e) time to first token over ${opts.turns} turns, ${opts.window}-token window (stories260K SLM, one thread)`);
  const load = () => LocalModel.load(slmFile, { contextSize: opts.window });
  const fresh = () => ({ turns: [], keepFrom: 0, ttftMs: [], evaluated: [], idleMs: [], idleTokens: [], idleSlides: 0 });
  const variants: Variant[] = [
    { name: "policy (slide by half, idle pre-slide)", slm: await load(), clear: false, ahead: { idle: true }, ...fresh() },
    // the policy's prompts (its slides planned ahead too), each evaluated whole
    { name: "whole prompt every turn", slm: await load(), clear: true, ahead: { idle: false }, ...fresh() },
    { name: "slide by just enough, cache kept", slm: await load(), clear: false, slideKeep: 1, ...fresh() },
  ];
  try {
    let text = 0;
    for (let i = 0; i < opts.turns; i++) {
      const line = userLine(i, opts.words);
      // a different variant goes first at each turn: the machine's load drifts alike for all of them
      for (let k = 0; k < variants.length; k++) await turn(variants[(i + k) % variants.length], line, opts.maxTokens);
      text = variants[0].slm.tokenizeText(variants[0].turns.map((m) => m.content).join("")).length;
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const rows = variants.map((v) => ({
      variant: v.name,
      totalTtftMs: +sum(v.ttftMs).toFixed(1),
      medianTtftMs: +median(v.ttftMs).toFixed(2),
      maxTtftMs: +Math.max(...v.ttftMs).toFixed(1),
      promptTokensEvaluated: sum(v.evaluated),
      idleSlides: v.idleSlides,
      idleTokensEvaluated: sum(v.idleTokens),
      idleMs: +sum(v.idleMs).toFixed(1),
    }));
    for (const r of rows)
      log(
        `  ${r.variant.padEnd(40)} total ${r.totalTtftMs} ms · median ${r.medianTtftMs} ms · max ${r.maxTtftMs} ms · ${r.promptTokensEvaluated} prompt tokens evaluated` +
          (r.idleTokensEvaluated
            ? ` · idle, between turns (not in the times): ${r.idleTokensEvaluated} tokens (${r.idleSlides} pre-slides), ${r.idleMs} ms`
            : ""),
      );
    const [policy, whole, justEnough] = rows;
    // the idle work changes no answer: the policy and its foil read the same prompts, so they write the same text
    const sameAnswers = variants[0].turns.every((m, i) => m.content === variants[1].turns[i]?.content);
    log(`  policy and whole-prompt answers identical: ${sameAnswers ? "yes" : "NO"}`);
    const ratio = +(policy.totalTtftMs / whole.totalTtftMs).toFixed(3);
    log(
      `  conversation: ${text} tokens of text, ${(text / opts.window).toFixed(1)}× the window; ratio (total time to first token) ${ratio}, medians ${(policy.medianTtftMs / whole.medianTtftMs).toFixed(2)}`,
    );
    figures.push({
      name: `e: time to first token over ${opts.turns} turns (${(text / opts.window).toFixed(1)}× the window), context policy (idle pre-slide outside the clock) / whole prompt every turn`,
      ratio,
      target: "<= 0.5",
      met: ratio <= 0.5,
    });
    figures.push({
      name: "e': same, sliding by just enough every turn (cache kept) / whole prompt every turn",
      ratio: +(justEnough.totalTtftMs / whole.totalTtftMs).toFixed(3),
      target: "none (reported)",
      met: null,
    });
    return { window: opts.window, turns: opts.turns, textTokens: text, sameAnswers, rows };
  } finally {
    for (const v of variants) await v.slm.dispose();
  }
}
