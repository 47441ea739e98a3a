/**
 * The SLM's top candidates at one position of a stored answer, computed on demand (the inspector's
 * pinned token): on large vocabularies the decoder does not collect them for every token (they cost a
 * sort of the whole vocabulary per token, bench a), so the position is re-evaluated here instead — the
 * conversation's prompt up to that answer, plus the answer's tokens before the position.
 */
import type { Conversation } from "../../shared/bridge.js";
import type { Candidate } from "../../shared/events.js";
import type { LocalModel } from "../../inference/localModel.js";

/** how many candidates the inspector shows */
export const INSPECTOR_TOP_K = 8;
/** tokens of context given to detokenize, so a candidate keeps its leading space */
const TEXT_CONTEXT = 8;

export async function candidatesAt(
  slm: LocalModel,
  conv: Conversation,
  messageId: string,
  index: number,
  k = INSPECTOR_TOP_K,
): Promise<Candidate[]> {
  const at = conv.messages.findIndex((m) => m.id === messageId);
  const msg = conv.messages[at];
  if (!msg || msg.role !== "assistant" || !msg.tokens) throw new Error("No such answer in this conversation");
  if (!Number.isSafeInteger(index) || index < 0 || index >= msg.tokens.length) throw new Error(`No token #${index} in this answer`);
  const history = conv.messages.slice(0, at).map((m) => ({ role: m.role, content: m.content }));
  const before = msg.tokens.slice(0, index).map((t) => t.tokenId);
  const prompt = [...slm.promptFromMessages(history), ...before];
  if (prompt.length >= slm.contextSize) throw new Error("That position lies beyond the model's context");
  const step = await slm.begin(prompt, { top1Prob: true, topK: k, hidden: false });
  const context = prompt.slice(-TEXT_CONTEXT);
  return (step.top ?? []).map((c) => ({ ...c, text: slm.detokenize([c.tokenId], context) }));
}
