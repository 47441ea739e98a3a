/**
 * Finished answers as Markdown. Model output is text, never HTML that runs: react-markdown builds React
 * elements from a syntax tree, and without rehype-raw raw HTML in the text becomes a text node — it is
 * shown as the characters the model wrote (a model explaining `<br>` keeps its `<br>`), never parsed.
 * Links keep only absolute http(s) and mailto URLs (javascript:, data:, file: and relative ones become
 * plain text) and open outside the app; images are never loaded (see `components`).
 */
import ReactMarkdown, { type Components } from "react-markdown";
import rehypeHighlight from "rehype-highlight";

/** The link targets an answer may carry; anything else (javascript:, data:, file:, relative) is dropped. */
export function safeHref(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === "https:" || u.protocol === "http:" || u.protocol === "mailto:" ? u.href : null;
  } catch {
    return null; // not an absolute URL
  }
}

const components: Components = {
  // a new window, never in place of the app: Electron's window-open handler hands http(s) to the
  // user's browser; browser mode opens a tab
  a: ({ href, children }) =>
    href ? (
      <a href={href} target="_blank" rel="noopener noreferrer">
        {children}
      </a>
    ) : (
      <span className="dropped-link">{children}</span>
    ),
  // an image URL in an answer can carry what the model read to someone else's server (prompt-injection
  // exfiltration); the CSP blocks remote images too, this keeps the element from existing at all
  img: ({ alt }) => <span className="dropped-image">[image{alt ? `: ${alt}` : ""}]</span>,
};

export function Markdown({ text }: { text: string }) {
  return (
    <div className="markdown" data-testid="markdown">
      <ReactMarkdown
        components={components}
        urlTransform={(url) => safeHref(url)}
        rehypePlugins={[[rehypeHighlight, { detect: true, ignoreMissing: true }]]}
      >
        {text}
      </ReactMarkdown>
    </div>
  );
}
