/**
 * How full the SLM's context window is in the open conversation: the last answer's prompt (what the
 * context policy kept, electron/engine/contextWindow.ts) plus that answer's own tokens, of the window;
 * and how many earlier messages the models no longer read. Follows a streaming answer token by token.
 */
import type { Conversation } from "../../shared/bridge";
import { useSlice } from "../context";
import { selectActiveConversation } from "../state/chatReducer";

export interface ContextFill {
  used: number;
  window: number;
  dropped: number;
  truncated: boolean;
}

/** The fill after the conversation's last answer that says what it read; null before any. */
export function contextFill(c: Conversation | null): ContextFill | null {
  const msgs = c?.messages ?? [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const { context, tokens } = msgs[i];
    if (msgs[i].role === "assistant" && context) {
      return {
        used: Math.min(context.window, context.used + (tokens?.length ?? 0)),
        window: context.window,
        dropped: context.droppedMessages,
        truncated: context.truncated,
      };
    }
  }
  return null;
}

export function ContextMeter() {
  // a string, so the component re-renders only when a shown figure changes (not on every token object)
  const key = useSlice(
    (s) => s.chat,
    (s) => JSON.stringify(contextFill(selectActiveConversation(s))),
  );
  const fill = JSON.parse(key) as ContextFill | null;
  if (!fill) return null;
  const share = fill.used / fill.window;
  const note = fill.truncated
    ? " · the last message was longer than the window: only its end was read"
    : fill.dropped
      ? ` · ${fill.dropped} earlier message${fill.dropped === 1 ? "" : "s"} no longer read`
      : "";
  return (
    <div
      className="context-meter"
      data-testid="context-meter"
      data-used={fill.used}
      data-window={fill.window}
      data-dropped={fill.dropped}
      title="Tokens of the local model's context window that the last answer used: the kept conversation plus the answer. When it fills, the oldest turns are left out, whole."
    >
      <span className="meter-bar" aria-hidden>
        <span style={{ width: `${Math.round(share * 100)}%` }} className={share > 0.85 ? "full" : ""} />
      </span>
      <span>
        Context {fill.used.toLocaleString("en-US")} / {fill.window.toLocaleString("en-US")} tokens{note}
      </span>
    </div>
  );
}
