/** A token's text with its whitespace made visible, so " the" and "the" are told apart. */

const MARKS: Record<string, string> = { " ": "␣", "\n": "↵", "\t": "→", "\r": "␍" };

/** Plain-string form (for labels and screen readers). */
export function visibleText(text: string): string {
  return Array.from(text, (ch) => MARKS[ch] ?? (ch < " " ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}` : ch)).join("");
}

export function VisibleText({ text }: { text: string }) {
  // runs of ordinary characters stay one text node; each whitespace mark is dimmed
  const parts: { ws: boolean; s: string }[] = [];
  for (const ch of text) {
    const mark = MARKS[ch] ?? (ch < " " ? visibleText(ch) : null);
    const last = parts[parts.length - 1];
    if (mark === null && last && !last.ws) last.s += ch;
    else parts.push({ ws: mark !== null, s: mark ?? ch });
  }
  return (
    <>
      {parts.map((p, i) =>
        p.ws ? (
          <span key={i} className="ws" aria-hidden>
            {p.s}
          </span>
        ) : (
          p.s
        ),
      )}
    </>
  );
}
