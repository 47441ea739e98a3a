/** The conversation: user messages (editable) and answers (rendered with their tokens' origins, or their raw token source; stats, chart). */
import { memo, useEffect, useRef, useState } from "react";
import type { Conversation, StoredMessage } from "../../shared/bridge";
import type { AnswerSummary } from "../../shared/events";
import { useApp, useSlice } from "../context";
import { answerFigures, formatBytes, formatPercent } from "../state/answerStats";
import { AnswerBody } from "./AnswerBody";
import { ConfidenceChart } from "./ConfidenceChart";
import { CopyButton } from "./CopyButton";
import { SystemPromptBar } from "./SystemPromptBar";
import { VersionSwitch } from "./VersionSwitch";
import { TokenView } from "./TokenView";

export function MessageList({ conversation }: { conversation: Conversation }) {
  const end = useRef<HTMLDivElement>(null);
  const last = conversation.messages[conversation.messages.length - 1];
  const lastLen = last?.tokens?.length ?? 0;
  const count = useRef(conversation.messages.length);
  useEffect(() => {
    // scroll only the chat pane (scrollIntoView would scroll the whole window, τ slider included):
    // always to a message just sent; while tokens stream, only when the reader is near the bottom
    // already, so reading back up is not interrupted
    const pane = end.current?.closest(".chat");
    const sent = conversation.messages.length > count.current;
    count.current = conversation.messages.length;
    if (pane && (sent || pane.scrollHeight - pane.scrollTop - pane.clientHeight < 200 + 400)) pane.scrollTop = pane.scrollHeight;
  }, [conversation.messages.length, lastLen]);
  const lastAssistant = [...conversation.messages].reverse().find((m) => m.role === "assistant")?.id;
  return (
    <div className="messages" data-testid="messages">
      <SystemPromptBar conversation={conversation} />
      {conversation.messages.map((m) =>
        m.role === "user" ? (
          <UserMessage key={m.id} message={m} />
        ) : (
          <AssistantMessage key={m.id} message={m} isLast={m.id === lastAssistant} />
        ),
      )}
      <div ref={end} />
    </div>
  );
}

const UserMessage = memo(function UserMessage({ message }: { message: StoredMessage }) {
  const { controller, stores } = useApp();
  const editing = useSlice(
    (s) => s.ui,
    (s) => s.editing === message.id,
  );
  const streaming = useSlice(
    (s) => s.chat,
    (s) => s.streaming !== null,
  );
  const [draft, setDraft] = useState(message.content);
  if (editing) {
    return (
      <div className="msg user editing">
        <textarea value={draft} onChange={(e) => setDraft(e.target.value)} aria-label="edit message" autoFocus />
        <div className="msg-actions">
          <button onClick={() => void controller.editAndResend(message.id, draft)} disabled={!draft.trim()}>
            Save & resend
          </button>
          <button onClick={() => stores.ui.setState({ editing: null })}>Cancel</button>
        </div>
      </div>
    );
  }
  return (
    <div className="msg user" data-testid="user-message" data-message-id={message.id}>
      <div className="bubble">{message.content}</div>
      <div className="msg-tools">
        <Versions message={message} streaming={streaming} />
        <CopyButton className="link" text={() => message.content} label="Copy this message" testId="copy-message" />
        {!streaming && (
          <button
            className="link"
            data-testid="edit"
            title="Edit and resend: a new branch; this one stays as a version"
            onClick={() => {
              setDraft(message.content);
              stores.ui.setState({ editing: message.id });
            }}
          >
            edit
          </button>
        )}
      </div>
    </div>
  );
});

/** ‹ k/n › for a message that has versions; nothing for one that has none. */
function Versions({ message, streaming }: { message: StoredMessage; streaming: boolean }) {
  const { controller } = useApp();
  const count = (message.versions?.length ?? 0) + 1;
  if (count < 2) return null;
  return (
    <VersionSwitch
      version={message.version ?? 0}
      count={count}
      disabled={streaming}
      onSelect={(k) => void controller.selectVersion(message.id, k)}
    />
  );
}

const AssistantMessage = memo(function AssistantMessage({ message, isLast }: { message: StoredMessage; isLast: boolean }) {
  const { controller, stores } = useApp();
  const live = useSlice(
    (s) => s.chat,
    (s) => s.streaming?.messageId === message.id,
  );
  const tokenView = useSlice(
    (s) => s.ui,
    (s) => s.tokenView[message.id] ?? false,
  );
  const liveTps = useSlice(
    (s) => s.session,
    (s) => (live ? (s.stats?.active?.tokensPerSecond ?? null) : null),
  );
  const streaming = useSlice(
    (s) => s.chat,
    (s) => s.streaming !== null,
  );
  const f = answerFigures(message);
  const showSource = tokenView && !live;
  return (
    <div
      className="msg assistant"
      data-testid="answer"
      data-status={live ? "streaming" : (message.status ?? "streaming")}
      data-message-id={message.id}
    >
      <div className="answer-body">
        {showSource ? <TokenView message={message} live={live} /> : <AnswerBody message={message} live={live} />}
        {message.status === "error" && <div className="error">The answer failed: {message.error}</div>}
        {!live && <StopReason message={message} canContinue={isLast && !streaming} />}
      </div>
      <div className="answer-footer">
        <div className="answer-stats" data-testid="answer-stats">
          <span data-testid="stat-share">
            <b>{formatPercent(f.cloudShare)}</b> cloud
          </span>
          <span>
            {f.tokens} tokens · {f.cloudTokens} cloud · {f.fallbackTokens} fallback
          </span>
          <span>{f.cloudCalls} cloud calls</span>
          {(f.tokensPerSecond ?? liveTps) != null && <span>{(f.tokensPerSecond ?? liveTps)!.toFixed(1)} tok/s</span>}
          {f.bytesUp != null && (
            <span>
              {formatBytes(f.bytesUp)} up · {formatBytes(f.bytesDown ?? 0)} down
            </span>
          )}
        </div>
        {!live && message.status && (
          <div className="msg-actions">
            <Versions message={message} streaming={streaming} />
            <CopyButton className="link" text={() => message.content} label="Copy this answer" testId="copy-message" />
            <button
              className="link"
              data-testid="toggle-view"
              title={tokenView ? "Show the answer rendered" : "Show the Markdown source the tokens spell, token by token"}
              onClick={() => stores.ui.setState((s) => ({ tokenView: { ...s.tokenView, [message.id]: !tokenView } }))}
            >
              {tokenView ? "Rendered" : "Source"}
            </button>
            {isLast && (
              <button className="link" data-testid="regenerate" onClick={() => void controller.regenerate()}>
                Regenerate
              </button>
            )}
          </div>
        )}
      </div>
      {(message.tokens?.length ?? 0) > 1 && <ConfidenceChart message={message} />}
    </div>
  );
});

const STOP_REASONS: Record<AnswerSummary["stopReason"], string | null> = {
  eog: null, // the model ended its answer: nothing to say
  "stop-string": "Ended at a stop string.",
  "max-tokens": "Stopped at the token limit.",
  abort: "Stopped.",
  "context-full": "Stopped: the context window is full.",
};

/** Why an answer ended, when it is not the model's own end; Continue after the token limit. */
function StopReason({ message, canContinue }: { message: StoredMessage; canContinue: boolean }) {
  const { controller } = useApp();
  const reason = message.summary?.stopReason ?? (message.status === "stopped" ? "abort" : null);
  const text = reason && STOP_REASONS[reason];
  if (!text) return null;
  return (
    <div className="stop-reason" data-testid="stop-reason" data-reason={reason}>
      {text}
      {reason === "max-tokens" && canContinue && (
        <button className="link" data-testid="continue" onClick={() => void controller.continueAnswer()}>
          Continue
        </button>
      )}
    </div>
  );
}
