/**
 * The prompt for a conversation's next answer, under the context policy (contextWindow.ts), measured
 * with the SLM's own chat template: what the engine service and the terminal chat both send to the
 * decoder. The cut lands on whole turns, so the prompt tokens are those of a shorter conversation.
 */
import type { ChatMessage } from "../../shared/chat.js";
import type { LocalModel } from "../../inference/localModel.js";
import { answerReserve, planContext, type ContextPlan } from "./contextWindow.js";

export interface PlannedPrompt {
  /** prompt tokens for the decoder */
  tokens: number[];
  plan: ContextPlan;
}

export function planPrompt(
  slm: Pick<LocalModel, "contextSize" | "promptFromMessages" | "keepEnd">,
  conv: { system: string | null; turns: readonly ChatMessage[]; keepFrom: number; maxTokens: number; slideKeep?: number },
): PlannedPrompt {
  const window = slm.contextSize;
  const plan = planContext({
    system: conv.system,
    turns: conv.turns,
    window,
    reserve: answerReserve(window, conv.maxTokens),
    keepFrom: conv.keepFrom,
    slideKeep: conv.slideKeep,
    measure: (messages) => slm.promptFromMessages(messages).length,
    keepEnd: (text, tokens) => slm.keepEnd(text, tokens),
  });
  const tokens = slm.promptFromMessages(plan.messages);
  return { tokens, plan: { ...plan, usage: { ...plan.usage, used: tokens.length } } };
}

/** The notice for an answer whose newest message was cut to fit (the plan's `truncated`). */
export function truncationNotice(window: number): string {
  return `The message is longer than the ${window}-token context window: only its end was read.`;
}
