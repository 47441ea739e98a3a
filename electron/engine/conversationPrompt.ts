/**
 * The prompt for a conversation's next answer, under the context policy (contextWindow.ts), measured
 * with the SLM's own chat template: what the engine service and the terminal chat both send to the
 * decoder. The cut lands on whole turns, so the prompt tokens are those of a shorter conversation.
 */
import type { ChatMessage } from "../../shared/chat.js";
import type { LocalModel } from "../../inference/localModel.js";
import { answerReserve, planContext, planSlideAhead, type ContextPlan, type SlideAhead } from "./contextWindow.js";

export interface PlannedPrompt {
  /** prompt tokens for the decoder */
  tokens: number[];
  plan: ContextPlan;
}

type PromptModel = Pick<LocalModel, "contextSize" | "promptFromMessages" | "keepEnd">;

export interface ConversationWindow {
  system: string | null;
  turns: readonly ChatMessage[];
  /** the first turn the last plan kept (0 for a new conversation) */
  keepFrom: number;
  maxTokens: number;
  slideKeep?: number;
}

export function planPrompt(slm: PromptModel, conv: ConversationWindow & { preSlid?: SlideAhead }): PlannedPrompt {
  const window = slm.contextSize;
  const plan = planContext({
    system: conv.system,
    turns: conv.turns,
    window,
    reserve: answerReserve(window, conv.maxTokens),
    keepFrom: conv.keepFrom,
    slideKeep: conv.slideKeep,
    preSlid: conv.preSlid,
    measure: (messages) => slm.promptFromMessages(messages).length,
    keepEnd: (text, tokens) => slm.keepEnd(text, tokens),
  });
  const tokens = slm.promptFromMessages(plan.messages);
  return { tokens, plan: { ...plan, usage: { ...plan.usage, used: tokens.length } } };
}

/** What is known of the next turn when an answer ends: its slide, if it needs one, and the tokens its prompt starts with. */
export interface NextTurn {
  /** the slide planned ahead (contextWindow.ts, planSlideAhead), or null: the next prompt keeps the same start */
  slide: SlideAhead | null;
  /** the tokens every next prompt starts with, whatever the message */
  prefix: number[];
}

/**
 * When an answer has ended (`conv.turns` ends with it): the next turn's slide, if it needs one, and
 * its prompt's start: the tokens two prompts with different messages share, but the last (without a
 * chat template the concatenated text may merge with the message's first characters; with one, that
 * token is the template's).
 */
export function planNextTurn(slm: PromptModel, conv: ConversationWindow): NextTurn {
  const window = slm.contextSize;
  const measure = (messages: ChatMessage[]) => slm.promptFromMessages(messages).length;
  const slide = planSlideAhead({ ...conv, window, reserve: answerReserve(window, conv.maxTokens), measure });
  const system: ChatMessage[] = conv.system ? [{ role: "system", content: conv.system }] : [];
  const kept = [...system, ...conv.turns.slice(slide?.keepFrom ?? conv.keepFrom)];
  const a = slm.promptFromMessages([...kept, { role: "user", content: "A" }]);
  const b = slm.promptFromMessages([...kept, { role: "user", content: "?\n" }]);
  let common = 0;
  while (common < a.length && a[common] === b[common]) common++;
  return { slide, prefix: a.slice(0, Math.max(0, common - 1)) };
}

/** The notice for an answer whose newest message was cut to fit (the plan's `truncated`). */
export function truncationNotice(window: number): string {
  return `The message is longer than the ${window}-token context window: only its end was read.`;
}
