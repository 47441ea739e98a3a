/**
 * An answer's source: the Markdown its tokens spell, token by token, coloured by origin. Hover shows a
 * token in the inspector; a click pins it. A token with no text shows as ∅ (CSS only: the text stays
 * exactly what the model wrote).
 */
import type { StoredMessage } from "../../shared/bridge";
import { useApp, useSlice } from "../context";
import { selectInspected } from "../state/stores";

export function TokenView({ message, live }: { message: StoredMessage; live: boolean }) {
  const { stores } = useApp();
  const inspected = useSlice(
    (s) => s.ui,
    (s) => {
      const r = selectInspected(s);
      return r?.messageId === message.id ? r.index : -1;
    },
  );
  const set = (index: number | null, pin = false) =>
    stores.ui.setState(
      pin
        ? { pinned: index === null ? null : { messageId: message.id, index } }
        : { hovered: index === null ? null : { messageId: message.id, index } },
    );
  return (
    <div className="tokens" data-testid="tokens" onMouseLeave={() => set(null)}>
      {message.tokens?.map((t) => (
        <span
          key={t.index}
          className={`tok origin-${t.origin}${t.index === inspected ? " inspected" : ""}${t.text ? "" : " tok-empty"}`}
          data-testid="token"
          data-origin={t.origin}
          data-index={t.index}
          onMouseEnter={() => set(t.index)}
          onClick={() => set(t.index, true)}
        >
          {/* React sets this as text: model output never becomes markup */}
          {t.text}
        </span>
      ))}
      {live && <span className="caret" aria-hidden />}
    </div>
  );
}
