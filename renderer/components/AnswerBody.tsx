/**
 * An answer as rendered Markdown in which every token keeps its origin (Markdown.tsx + rehypeTokens),
 * while it streams and after. One set of handlers on the body (not one per token): hover shows a
 * token in the inspector, a click or Enter pins it, ←/→ move the pinned token, Esc lets it go.
 * The inspected token's outline is set on the DOM from the store, so moving it re-renders nothing.
 */
import { useEffect, useLayoutEffect, useRef, type KeyboardEvent, type MouseEvent } from "react";
import type { StoredMessage } from "../../shared/bridge";
import { useApp } from "../context";
import type { Stores } from "../state/stores";
import { Markdown } from "./Markdown";

const tokenOf = (el: EventTarget | null): number | null => {
  const t = (el as HTMLElement | null)?.closest?.("[data-index]");
  return t ? Number(t.getAttribute("data-index")) : null;
};

/** The element standing for token `index` in an answer (its first piece, or its marker). */
export function tokenElement(root: ParentNode, index: number): HTMLElement | null {
  return root.querySelector<HTMLElement>(`[data-index="${index}"][data-testid="token"]`);
}

export function AnswerBody({ message, live }: { message: StoredMessage; live: boolean }) {
  const { stores } = useApp();
  const body = useRef<HTMLDivElement>(null);
  const count = message.tokens?.length ?? 0;
  const ref = (index: number) => ({ messageId: message.id, index });

  const highlight = () => {
    if (body.current) markInspected(body.current, stores, message.id);
  };
  useLayoutEffect(highlight); // the tree is new after every render (streaming): mark again
  useEffect(() => stores.ui.subscribe(() => body.current && markInspected(body.current, stores, message.id)), [stores, message.id]);

  const pin = (index: number, focus: boolean) => {
    stores.ui.setState({ pinned: ref(index), hovered: null });
    if (focus && body.current) tokenElement(body.current, index)?.focus({ preventScroll: false });
  };
  const onKeyDown = (e: KeyboardEvent) => {
    if (!count) return;
    const s = stores.ui.getState();
    // the pinned token first: a hidden marker cannot hold the focus, so the focused element may lag
    const current = s.pinned?.messageId === message.id ? s.pinned.index : tokenOf(e.target);
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      e.preventDefault();
      const step = e.key === "ArrowRight" ? 1 : -1;
      pin(current === null ? (step > 0 ? 0 : count - 1) : Math.min(count - 1, Math.max(0, current + step)), true);
    } else if (e.key === "Home" || e.key === "End") {
      e.preventDefault();
      pin(e.key === "Home" ? 0 : count - 1, true);
    } else if ((e.key === "Enter" || e.key === " ") && current !== null) {
      e.preventDefault();
      pin(current, true);
    } else if (e.key === "Escape" && s.pinned) {
      e.stopPropagation(); // closes the inspector; the window's Esc (stop the answer) is not reached
      stores.ui.setState({ pinned: null, hovered: null });
      body.current?.focus();
    }
  };
  const onClick = (e: MouseEvent) => {
    const i = tokenOf(e.target);
    if (i !== null && !(e.target as HTMLElement).closest("button, a")) pin(i, true);
  };
  const onMouseOver = (e: MouseEvent) => {
    const i = tokenOf(e.target);
    const h = stores.ui.getState().hovered;
    if (i !== null && (h?.index !== i || h.messageId !== message.id)) stores.ui.setState({ hovered: ref(i) });
  };
  return (
    <div
      ref={body}
      className={`answer-text${live ? " live" : ""}`}
      data-testid="answer-text"
      tabIndex={0}
      role="group"
      aria-label="Answer. Arrow keys move through its tokens; the inspector explains each one."
      onKeyDown={onKeyDown}
      onClick={onClick}
      onMouseOver={onMouseOver}
      onMouseLeave={() => stores.ui.setState({ hovered: null })}
    >
      <Markdown text={message.content} tokens={message.tokens} />
      {live && <span className="caret" aria-hidden />}
    </div>
  );
}

/** Sets `.inspected` (hovered or pinned) and `.pinned` on the pieces of the inspected tokens. */
function markInspected(root: HTMLElement, stores: Stores, messageId: string): void {
  const { hovered, pinned } = stores.ui.getState();
  const want = (cls: string, index: number | null) => {
    for (const el of Array.from(root.querySelectorAll(`.${cls}`)))
      if (Number(el.getAttribute("data-index")) !== index) el.classList.remove(cls);
    if (index !== null) for (const el of Array.from(root.querySelectorAll(`[data-index="${index}"]`))) el.classList.add(cls);
  };
  const inspected = hovered ?? pinned;
  want("inspected", inspected?.messageId === messageId ? inspected.index : null);
  want("pinned", pinned?.messageId === messageId ? pinned.index : null);
}
