/**
 * The message box: Enter sends, Shift+Enter is a new line; Stop while an answer streams. The text is
 * kept until an answer has started: while the local model is not ready yet, Send waits (disabled).
 */
import { useEffect, useRef, useState } from "react";
import { ContextMeter } from "./ContextMeter";
import { useApp, useSlice } from "../context";

export function Composer() {
  const { controller } = useApp();
  const streaming = useSlice(
    (s) => s.chat,
    (s) => s.streaming !== null,
  );
  const ready = useSlice(
    (s) => s.session,
    (s) => s.connected && !!s.models?.slm.loaded,
  );
  const [text, setText] = useState("");
  const [sending, setSending] = useState(false);
  const box = useRef<HTMLTextAreaElement>(null);
  const focusRequest = useSlice(
    (s) => s.ui,
    (s) => s.composerFocus,
  );
  useEffect(() => {
    if (focusRequest) box.current?.focus();
  }, [focusRequest]);

  const send = () => {
    if (!text.trim() || streaming || !ready || sending) return;
    const sent = text;
    setSending(true);
    void controller.send(sent).then((ok) => {
      setSending(false);
      if (ok) setText((now) => (now === sent ? "" : now)); // typed on meanwhile: keep it
    });
  };

  return (
    <div className="composer">
      <ContextMeter />
      <textarea
        ref={box}
        data-testid="composer"
        value={text}
        aria-label="message"
        placeholder={
          ready ? "Message Tandem…  (Enter sends, Shift+Enter new line)" : "Message Tandem… (sends once the local model is ready)"
        }
        rows={Math.min(8, Math.max(1, text.split("\n").length))}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      {streaming ? (
        <button className="stop" data-testid="stop" onClick={() => void controller.stop()} title="Stop (Esc)">
          ■ Stop
        </button>
      ) : (
        <button
          className="send"
          data-testid="send"
          onClick={send}
          disabled={!text.trim() || !ready || sending}
          title={ready ? "Send (Enter)" : "Waiting for the local model"}
        >
          Send
        </button>
      )}
    </div>
  );
}
