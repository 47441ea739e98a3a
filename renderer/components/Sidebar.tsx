/** Conversations: new, select, rename (double-click), delete, export. */
import { useState } from "react";
import { useApp, useSlice } from "../context";
import type { ExportFormat } from "../../shared/bridge";
import { Settings } from "./Settings";
import { ModelStatusPanel } from "./TopBar";

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

  const download = async (id: string, format: ExportFormat) => {
    const f = await controller.exportConversation(id, format);
    const url = URL.createObjectURL(new Blob([f.content], { type: f.mime }));
    const a = document.createElement("a");
    a.href = url;
    a.download = f.filename;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

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
      <ul className="conv-list" data-testid="conversation-list">
        {conversations.map((c) => (
          <li key={c.id} className={c.id === activeId ? "active" : ""} data-testid="conversation-item">
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
                {c.title}
              </button>
            )}
            <span className="conv-actions">
              <button title="Export as Markdown" onClick={() => void download(c.id, "markdown")}>
                md
              </button>
              <button title="Export as JSON, with every token's origin" onClick={() => void download(c.id, "json")}>
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
      <ModelStatusPanel />
      <Settings />
    </nav>
  );
}
