/** The open conversation's system prompt: its own, or the app's default (Settings); edited in place. */
import { useState } from "react";
import type { Conversation } from "../../shared/bridge";
import { useApp, useSlice } from "../context";
import { errorMessage } from "../../shared/errors.js";

export function SystemPromptBar({ conversation }: { conversation: Conversation }) {
  const { controller } = useApp();
  const fallback = useSlice(
    (s) => s.session,
    (s) => s.settings?.systemPrompt ?? "",
  );
  const own = conversation.systemPrompt;
  const [draft, setDraft] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const save = async (value: string | null) => {
    try {
      await controller.setSystemPrompt(conversation.id, value);
      setDraft(null);
      setError(null);
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  if (draft !== null) {
    return (
      <div className="system-bar editing" data-testid="system-prompt">
        <textarea
          value={draft}
          rows={3}
          autoFocus
          aria-label="this conversation's system prompt"
          placeholder="Instructions the models read before this conversation"
          onChange={(e) => setDraft(e.target.value)}
        />
        <div className="msg-actions">
          <button onClick={() => void save(draft)}>Save</button>
          {own !== undefined && <button onClick={() => void save(null)}>Use the default</button>}
          <button onClick={() => setDraft(null)}>Cancel</button>
        </div>
        {error && (
          <div className="field-error" role="alert">
            {error}
          </div>
        )}
      </div>
    );
  }
  const text = own ?? fallback;
  return (
    <div className="system-bar" data-testid="system-prompt">
      <span className="muted">System prompt{own === undefined ? " (default)" : ""}:</span>{" "}
      <span className="system-text" title={text}>
        {text || "none"}
      </span>
      <button className="link" data-testid="edit-system-prompt" onClick={() => setDraft(text)}>
        edit
      </button>
    </div>
  );
}
