/**
 * The context policy: which part of a conversation the models read for the next answer, so that a
 * conversation of any length keeps answering within the SLM's context window.
 *
 * - The system prompt is always kept.
 * - Room is reserved for the answer (`answerReserve`): the prompt may use the rest, the *budget*.
 * - The oldest turns are dropped first, whole (a kept stretch starts at a user message); no message
 *   is cut in the middle, except the newest one when it alone is longer than the budget: then its
 *   end is kept and the plan says so (`truncated`).
 * - The window slides in chunks: the first kept message is remembered between turns (`keepFrom`)
 *   and moves only when the prompt no longer fits, and then far enough that the prompt takes at
 *   most `SLIDE_KEEP` of the budget. Between slides every prompt extends the previous one, so the
 *   SLM's KV cache (and the cloud's session) is reused and only the new turn is evaluated; a slide
 *   costs one re-evaluation of the kept text (at most half the window), and the cloud follows with
 *   one re-sync (its delta's base falls back to the common prefix).
 * - A slide may be planned ahead, when an answer ends (`planSlideAhead`): if the next prompt, with a
 *   message as long as the last one, would not fit, the window slides now, so the kept prefix can be
 *   evaluated while the user types (idlePrefill.ts). The next plan honours that start (`preSlid`)
 *   and reports it as its slide; a longer message than foreseen slides again as usual.
 *
 * Pure: the caller supplies how a list of messages is measured in prompt tokens (the SLM's chat
 * template) and how a text is cut to its last n tokens.
 */
import type { ChatMessage, ContextUsage } from "../../shared/chat.js";
import { TandemError } from "../../shared/errors.js";

/** After a slide the prompt takes at most this share of the budget: the next slides are turns away. */
export const SLIDE_KEEP = 0.5;
/** The answer's reserve is at most this share of the window (a long max-tokens must not starve the prompt). */
export const MAX_RESERVE_SHARE = 0.25;

export interface ContextPlanInput {
  /** the conversation's system prompt (null or empty: none) */
  system: string | null;
  /** the turns in order; the last is the message being answered */
  turns: readonly ChatMessage[];
  /** the SLM's context size, tokens */
  window: number;
  /** tokens kept free for the answer */
  reserve: number;
  /** the first turn kept by the previous plan of this conversation (0 for a new one) */
  keepFrom: number;
  /** prompt tokens for these messages, as the SLM would read them */
  measure: (messages: ChatMessage[]) => number;
  /** `text` cut to (about) its last `tokens` tokens */
  keepEnd: (text: string, tokens: number) => string;
  /** the share of the budget a slide leaves the prompt (default SLIDE_KEEP; 1: drop just enough, bench e's foil) */
  slideKeep?: number;
  /** a slide planned ahead after the first `turns` turns (planSlideAhead): honoured when `turns` has one message more */
  preSlid?: SlideAhead;
}

/** A slide planned when an answer ended, for the next turn. */
export interface SlideAhead {
  /** the first turn the next prompt keeps */
  keepFrom: number;
  /** how many turns the conversation had when it was planned (the next prompt has one more) */
  turns: number;
}

export interface ContextPlan {
  /** what the models read: the system prompt, then the kept turns */
  messages: ChatMessage[];
  /** index in `turns` of the first kept turn: pass it back as `keepFrom` next time */
  keepFrom: number;
  usage: ContextUsage;
}

export class ContextPolicyError extends TandemError {
  constructor(message: string) {
    super("context", message);
  }
}

/** Tokens to keep free for the answer: its max-tokens, at most a quarter of the window. */
export function answerReserve(window: number, maxTokens: number): number {
  return Math.max(1, Math.min(maxTokens, Math.floor(window * MAX_RESERVE_SHARE)));
}

export function planContext(input: ContextPlanInput): ContextPlan {
  const { turns, window, reserve } = input;
  if (turns.length === 0) throw new ContextPolicyError("Nothing to answer");
  const budget = window - reserve;
  const sys: ChatMessage[] = input.system ? [{ role: "system", content: input.system }] : [];
  const build = (from: number) => [...sys, ...turns.slice(from)];
  const last = turns.length - 1;
  // where a kept stretch may start: a user message, or the newest message whatever it is
  const starts = turns.map((t, i) => i).filter((i) => turns[i].role === "user" || i === last);
  // a slide planned ahead counts for the turn it was planned for: one new message after those turns
  const ahead = input.preSlid && input.preSlid.turns === turns.length - 1 && input.preSlid.keepFrom > input.keepFrom;
  const remembered = ahead ? input.preSlid!.keepFrom : input.keepFrom;
  // a conversation cut short behind the remembered start (an edit of an older message) is planned afresh
  let from = remembered > last ? 0 : (starts.find((i) => i >= Math.max(0, remembered)) ?? last);
  let tokens = input.measure(build(from));
  const plan = (used: number, slid: boolean): ContextPlan => ({
    messages: build(from),
    keepFrom: from,
    usage: { used, window, reserved: reserve, droppedMessages: from, slid, truncated: false },
  });
  if (tokens <= budget) return plan(tokens, !!ahead);

  // slide: the first start whose prompt fits in SLIDE_KEEP of the budget
  const target = Math.floor(budget * (input.slideKeep ?? SLIDE_KEEP));
  from =
    firstFitting(
      starts.filter((i) => i > from),
      (i) => input.measure(build(i)) <= target,
    ) ?? last;
  tokens = input.measure(build(from));
  if (tokens <= budget) return plan(tokens, true);
  return truncateNewest(input, sys, budget);
}

/** The first of `starts` that `fits` (prompts shrink as the start grows: a binary search), or undefined. */
function firstFitting(starts: readonly number[], fits: (start: number) => boolean): number | undefined {
  let lo = 0;
  let hi = starts.length; // starts[hi] fits; starts.length = none does
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fits(starts[mid])) hi = mid;
    else lo = mid + 1;
  }
  return starts[lo];
}

export type SlideAheadInput = Omit<ContextPlanInput, "keepEnd" | "preSlid">;

/**
 * When an answer has ended (`turns` ends with it): the slide the next turn will need, planned now, or
 * null when the next prompt should fit. The next message is foreseen as long as the last user message
 * (what it added to the prompt); the new start leaves that message room within SLIDE_KEEP of the
 * budget, as a slide at the next turn would. With no turn left to keep, the next prompt starts at the
 * new message (`turns.length`).
 */
export function planSlideAhead(input: SlideAheadInput): SlideAhead | null {
  const { turns } = input;
  const lastUser = turns.findLastIndex((t) => t.role === "user");
  if (lastUser < 0) return null;
  const budget = input.window - input.reserve;
  const sys: ChatMessage[] = input.system ? [{ role: "system", content: input.system }] : [];
  const build = (from: number) => input.measure([...sys, ...turns.slice(from)]);
  const message = input.measure([...sys, turns[lastUser]]) - input.measure(sys);
  const from = input.keepFrom > turns.length ? 0 : Math.max(0, input.keepFrom);
  if (build(from) + message <= budget) return null;
  const target = Math.floor(budget * (input.slideKeep ?? SLIDE_KEEP));
  const starts = turns.map((_, i) => i).filter((i) => i > from && turns[i].role === "user");
  const keepFrom = firstFitting(starts, (i) => build(i) + message <= target) ?? turns.length;
  return { keepFrom, turns: turns.length };
}

/** The newest message alone does not fit: keep its end, as much as the budget allows. */
function truncateNewest(input: ContextPlanInput, sys: ChatMessage[], budget: number): ContextPlan {
  const { turns, window, reserve } = input;
  const last = turns.length - 1;
  const newest = turns[last];
  const overhead = input.measure([...sys, { ...newest, content: "" }]);
  if (overhead >= budget / 2) {
    throw new ContextPolicyError(
      `The system prompt (${overhead} tokens with the template) leaves too little room in the ${window}-token context window; shorten it or raise the context size`,
    );
  }
  // the cut is in tokens of the text alone; the template may tokenise its edge slightly differently
  let room = budget - overhead;
  for (let attempt = 0; attempt < 8; attempt++) {
    const content = input.keepEnd(newest.content, room);
    const messages = [...sys, { ...newest, content }];
    const used = input.measure(messages);
    if (used <= budget) {
      return { messages, keepFrom: last, usage: { used, window, reserved: reserve, droppedMessages: last, slid: true, truncated: true } };
    }
    room -= Math.max(1, used - budget);
  }
  throw new ContextPolicyError("Could not fit the newest message into the context window");
}
