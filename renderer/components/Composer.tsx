/** The message box: Enter sends, Shift+Enter is a new line; Stop while an answer streams. */
import { useRef, useState } from "react";
import { useApp, useSlice } from "../context";

export function Composer() {
  const { controller } = useApp();
  const streaming = useSlice((s) => s.chat, (s) => s.streaming !== null);
  const [text, setText] = useState("");
  const box = useRef<HTMLTextAreaElement>(null);

  const send = () => {
    if (!text.trim() || streaming) return;
    void controller.send(text);
    setText("");
  };

  return (
    <div className="composer">
      <textarea
        ref={box}
        data-testid="composer"
        value={text}
        placeholder="Message Tandem…  (Enter sends, Shift+Enter new line)"
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
        <button className="send" data-testid="send" onClick={send} disabled={!text.trim()}>
          Send
        </button>
      )}
    </div>
  );
}
