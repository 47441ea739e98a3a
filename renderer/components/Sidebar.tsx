/** Conversations: new, search, select, rename (double-click), delete, export (one or all), import; the one generating is marked. */
import { useEffect, useRef, useState } from "react";
import { useApp, useSlice } from "../context";
import type { ExportFormat } from "../../shared/bridge";
import { Settings } from "./Settings";
import { ModelStatusPanel } from "./TopBar";
import { ArchiveButtons, download, SearchBox } from "./SidebarTools";

export function Sidebar() {
  const { controller } = useApp();
  const conversations = useSlice(
    (s) => s.chat,
    (s) => s.conversations,
  );
  const activeId = useSlice(
    (s) => s.chat,
    (s) => s.activeId,
  );
  const [renaming, setRenaming] = useState<string | null>(null);

  const streamingId = useSlice(
    (s) => s.chat,
    (s) => s.streaming?.conversationId ?? null,
  );
  const list = useRef<HTMLUListElement>(null);
  useEffect(() => {
    // the open conversation stays in view in the list (opened from a search, or the list is short)
    // (the list's own scroll only: scrollIntoView could move the sidebar itself)
    const ul = list.current;
    const li = ul?.querySelector("li.active");
    if (!ul || !li) return;
    const [box, item] = [ul.getBoundingClientRect(), li.getBoundingClientRect()];
    if (item.top < box.top) ul.scrollTop -= box.top - item.top;
    else if (item.bottom > box.bottom) ul.scrollTop += item.bottom - box.bottom;
  }, [activeId]);
  const exportOne = async (id: string, format: ExportFormat) => download(await controller.exportConversation(id, format));

  return (
    <nav className="sidebar" aria-label="conversations">
      <div className="brand">
        <span className="logo" aria-hidden>
          ◐
        </span>{" "}
        Tandem
      </div>
      <button className="new-chat" data-testid="new-chat" onClick={() => void controller.newChat()} title="New chat (Ctrl/⌘+N)">
        + New chat
      </button>
      <SearchBox />
      <ul className="conv-list" data-testid="conversation-list" ref={list}>
        {conversations.map((c) => (
          <li
            key={c.id}
            className={`${c.id === activeId ? "active" : ""}${c.id === streamingId ? " generating" : ""}`}
            data-testid="conversation-item"
            data-generating={c.id === streamingId ? "true" : undefined}
          >
            {renaming === c.id ? (
              <input
                autoFocus
                defaultValue={c.title}
                aria-label="conversation title"
                onKeyDown={(e) => {
                  if (e.key === "Enter") {
                    void controller.rename(c.id, e.currentTarget.value);
                    setRenaming(null);
                  } else if (e.key === "Escape") setRenaming(null);
                }}
                onBlur={() => setRenaming(null)}
              />
            ) : (
              <button
                className="conv-title"
                onClick={() => void controller.select(c.id)}
                onDoubleClick={() => setRenaming(c.id)}
                title="double-click to rename"
              >
                {c.id === streamingId && (
                  <span className="generating-dot" role="img" aria-label="generating" title="Generating an answer" />
                )}
                {c.title}
              </button>
            )}
            <span className="conv-actions">
              <button title="Export as Markdown" onClick={() => void exportOne(c.id, "markdown")}>
                md
              </button>
              <button title="Export as JSON, with every token's origin" onClick={() => void exportOne(c.id, "json")}>
                json
              </button>
              <button
                title="Delete"
                aria-label="delete conversation"
                onClick={() => confirm(`Delete “${c.title}”?`) && void controller.remove(c.id)}
              >
                ×
              </button>
            </span>
          </li>
        ))}
      </ul>
      <ArchiveButtons />
      <ModelStatusPanel />
      <Settings />
    </nav>
  );
}
