/** The sidebar's search box (titles and message text, every version) and Export all / Import. */
import { useEffect, useRef, useState } from "react";
import type { SearchHit } from "../../shared/bridge";
import { useApp } from "../context";

/** Saves a text as a file the browser downloads. */
export function download(f: { filename: string; mime: string; content: string }): void {
  const url = URL.createObjectURL(new Blob([f.content], { type: f.mime }));
  const a = document.createElement("a");
  a.href = url;
  a.download = f.filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function SearchBox() {
  const { controller } = useApp();
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  useEffect(() => {
    if (!query.trim()) return setHits(null);
    let current = true;
    // a pause after typing, not a search per keystroke
    const t = setTimeout(() => void controller.search(query).then((h) => current && setHits(h)), 150);
    return () => {
      current = false;
      clearTimeout(t);
    };
  }, [query, controller]);
  const open = async (hit: SearchHit) => {
    await controller.select(hit.conversationId);
    if (hit.messageId) {
      // the message, once rendered, if it is on the active path (a match in another version opens the conversation)
      requestAnimationFrame(() =>
        document.querySelector(`[data-message-id="${CSS.escape(hit.messageId!)}"]`)?.scrollIntoView({ block: "center" }),
      );
    }
  };
  return (
    <div className="search">
      <input
        type="search"
        data-testid="search"
        placeholder="Search conversations"
        aria-label="search conversations"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        onKeyDown={(e) => e.key === "Escape" && setQuery("")}
      />
      {hits && (
        <ul className="search-hits" data-testid="search-results" aria-label="search results">
          {hits.length === 0 && <li className="muted small">Nothing found</li>}
          {hits.map((h) => (
            <li key={h.conversationId}>
              <button data-testid="search-hit" onClick={() => void open(h)}>
                <span className="hit-title">{h.title}</span>
                <span className="hit-snippet">{h.snippet}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function ArchiveButtons() {
  const { controller, stores } = useApp();
  const file = useRef<HTMLInputElement>(null);
  const note = (m: string) => stores.session.setState((s) => ({ notices: [...s.notices, m] }));
  const onFile = async (f: File | undefined) => {
    if (!f) return;
    const text = await f.text();
    await controller.importConversations(text);
  };
  return (
    <div className="archive">
      <button
        className="link"
        data-testid="export-all"
        onClick={() => void controller.exportAll().then(download, (e: Error) => note(e.message))}
      >
        Export all
      </button>
      <button className="link" data-testid="import" onClick={() => file.current?.click()}>
        Import…
      </button>
      <input
        ref={file}
        type="file"
        accept=".json,application/json"
        hidden
        data-testid="import-file"
        onChange={(e) => {
          void onFile(e.target.files?.[0]);
          e.target.value = ""; // the same file again is a new choice
        }}
      />
    </div>
  );
}
