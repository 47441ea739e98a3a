/**
 * The terminal chat's interactive mode (`npm run chat -- --interactive`): a REPL on the app's
 * conversation engine. One line is one message; the history is kept under the app's context policy
 * (electron/engine/contextWindow.ts: the system prompt stays, the oldest turns go in chunks, the KV
 * cache is reused between turns). Commands: `/system <text>` (empty: none), `/reset`, `/tau <x>`,
 * `/exit`. Messages may come from a pipe: each line is answered in turn, then the REPL ends.
 */
import { createInterface } from "node:readline";
import type { ChatMessage, ContextUsage } from "../shared/chat.js";
import type { AnswerSummary, TokenEvent } from "../shared/events.js";
import { validateTau } from "../shared/router.js";
import type { CollaborativeDecoder } from "../electron/engine/decoder.js";
import { planPrompt, truncationNotice } from "../electron/engine/conversationPrompt.js";
import { ContextPolicyError } from "../electron/engine/contextWindow.js";
import { terminalJson, terminalSafe } from "./terminalText.js";
import { errorMessage } from "../shared/errors.js";
import { resolveSampling, type SamplingConfig } from "../shared/sampling.js";
import type { ShareSteer } from "../electron/engine/cloudControl/shareCalibration.js";
import { shareReport, steered } from "../electron/engine/cloudControl/steer.js";

export interface ReplOptions {
  decoder: CollaborativeDecoder;
  system: string;
  tau: number;
  /** with a target cloud share: a steer per answer (cloudControl/); /tau turns it off */
  newSteer?: () => ShareSteer;
  maxTokens: number;
  topK: number;
  /** how answers are sampled: a new seed per answer unless it fixes one */
  sampling: SamplingConfig;
  json: boolean;
  /** writes a token event as the user sees it (coloured or not) */
  paint: (ev: TokenEvent) => string;
  /** the summary line (not --json) */
  format: (s: AnswerSummary, usage: ContextUsage) => string;
  /** the summary object (--json) */
  jsonSummary: (s: AnswerSummary) => object;
}

interface ReplState {
  system: string;
  tau: number;
  /** answers steer τ to the target share (until /tau sets one) */
  steering: boolean;
  turns: ChatMessage[];
  keepFrom: number;
  /** the answer being written, to stop on Ctrl-C */
  abort: AbortController | null;
}

/** Runs the REPL until end of input or /exit; resolves to the exit code (1 if an answer failed). */
export async function runRepl(opts: ReplOptions, first?: string): Promise<number> {
  const tty = !!process.stdin.isTTY;
  const rl = createInterface({ input: process.stdin, terminal: tty });
  const state: ReplState = {
    system: opts.system,
    tau: validateTau(opts.tau),
    steering: !!opts.newSteer,
    turns: [],
    keepFrom: 0,
    abort: null,
  };
  const log = (msg: string) => process.stderr.write(terminalSafe(msg) + "\n");
  // Ctrl-C stops the answer being written; at the prompt it ends the chat
  const onInterrupt = () => (state.abort ? state.abort.abort() : rl.close());
  rl.on("SIGINT", onInterrupt);
  process.on("SIGINT", onInterrupt);
  const ask = () => tty && process.stderr.write("> ");
  if (tty) log("one line per message · /system <text> · /reset · /tau <x> · /exit · Ctrl-C stops an answer");
  let failed = false;
  try {
    if (first) failed = !(await answer(opts, state, first)) || failed;
    ask();
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === "/exit" || line === "/quit") break;
      if (line.startsWith("/")) command(state, line, log);
      else if (line) failed = !(await answer(opts, state, raw)) || failed;
      ask();
    }
  } finally {
    process.off("SIGINT", onInterrupt);
    rl.close();
  }
  return failed ? 1 : 0;
}

function command(state: ReplState, line: string, log: (m: string) => void): void {
  const [name, ...rest] = line.split(/\s+/);
  const arg = line.slice(name.length).trim();
  switch (name) {
    case "/system":
      // a new system prompt changes the prompt's start: the next turn reads the kept history again, once
      state.system = arg;
      return log(arg ? `system prompt set (${arg.length} characters)` : "system prompt cleared");
    case "/reset":
      state.turns = [];
      state.keepFrom = 0;
      return log("conversation cleared");
    case "/tau": {
      const n = Number(rest[0]);
      if (rest.length !== 1 || !Number.isFinite(n) || n < 0 || n > 1)
        return log(`error: /tau takes a number from 0 to 1, got ${JSON.stringify(arg)}`);
      state.tau = n;
      state.steering = false;
      return log(`τ = ${n}`);
    }
    default:
      return log(`error: unknown command ${JSON.stringify(name)} (/system, /reset, /tau, /exit)`);
  }
}

/** Answers one message under the context policy; false when it failed (the message is not kept then). */
async function answer(opts: ReplOptions, state: ReplState, text: string): Promise<boolean> {
  const slm = opts.decoder.slm;
  const turns: ChatMessage[] = [...state.turns, { role: "user", content: text }];
  let planned;
  try {
    planned = planPrompt(slm, { system: state.system || null, turns, keepFrom: state.keepFrom, maxTokens: opts.maxTokens });
  } catch (err) {
    if (!(err instanceof ContextPolicyError)) throw err;
    process.stderr.write(`error: ${terminalSafe(err.message)}\n`);
    return false;
  }
  const usage = planned.plan.usage;
  if (usage.truncated) process.stderr.write(`notice: ${truncationNotice(usage.window)}\n`);
  state.abort = new AbortController();
  const sampling = resolveSampling(opts.sampling);
  try {
    const steer = state.steering ? opts.newSteer?.() : undefined;
    const generated = opts.decoder.generate(planned.tokens, {
      tau: steer ? () => steer.tau() : () => state.tau,
      maxTokens: opts.maxTokens,
      signal: state.abort.signal,
      topK: opts.topK,
      sampling,
    });
    const run = steer ? steered(generated, steer) : generated;
    for await (const ev of run) process.stdout.write(opts.json ? terminalJson({ ...ev, sampling }) + "\n" : opts.paint(ev));
    const summary = await run.summary;
    state.turns = [...turns, { role: "assistant", content: summary.text }];
    state.keepFrom = planned.plan.keepFrom;
    if (opts.json)
      process.stdout.write(
        terminalJson({ summary: { ...opts.jsonSummary(summary), ...(steer ? shareReport(steer) : {}), context: usage } }) + "\n",
      );
    else process.stderr.write("\n" + opts.format(summary, usage) + "\n");
    return true;
  } catch (err) {
    process.stderr.write(`error: ${terminalSafe(errorMessage(err))}\n`);
    return false;
  } finally {
    state.abort = null;
  }
}
