/**
 * Finished answers as Markdown. Model output is text, never HTML that runs: react-markdown builds React
 * elements from a syntax tree, and without rehype-raw raw HTML in the text becomes a text node — it is
 * shown as the characters the model wrote (a model explaining `<br>` keeps its `<br>`), never parsed.
 * Links keep only absolute http(s) and mailto URLs (javascript:, data:, file: and relative ones become
 * plain text) and open outside the app; images are never loaded (see `components`).
 */
import { useMemo, useRef, type ReactNode } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import rehypeHighlight from "rehype-highlight";
import rehypeKatex from "rehype-katex";
import remarkGfm from "remark-gfm";
import remarkMath from "remark-math";
import { rehypeTokens, type TokenPluginOptions } from "../markdown/rehypeTokens";
import { layoutTokens, type TokenLike } from "../markdown/tokenSpans";
import { CopyButton } from "./CopyButton";

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
  pre: ({ children }) => <CodeBlock>{children}</CodeBlock>,
  img: ({ alt }) => <span className="dropped-image">[image{alt ? `: ${alt}` : ""}]</span>,
};

/** A fenced code block with a Copy button (the text is read from the DOM: tokens split it into spans). */
function CodeBlock({ children }: { children?: ReactNode }) {
  const pre = useRef<HTMLPreElement>(null);
  return (
    <div className="code-block">
      <CopyButton text={() => pre.current?.textContent ?? ""} label="copy code" className="copy-code" testId="copy-code" />
      <pre ref={pre}>{children}</pre>
    </div>
  );
}

const REMARK = [remarkGfm, remarkMath];
const HIGHLIGHT: [typeof rehypeHighlight, { detect: boolean; ignoreMissing: boolean }] = [
  rehypeHighlight,
  { detect: true, ignoreMissing: true },
];
// KaTeX before highlighting: display math arrives as `pre > code.language-math`, which the highlighter
// would otherwise take for code (rehype-katex shows bad TeX as its source, never throws)
const KATEX: [typeof rehypeKatex, { strict: boolean }] = [rehypeKatex, { strict: false }];

/**
 * An answer as Markdown. With `tokens`, the source is their texts joined and every token keeps an
 * element with its origin in the rendered tree (rehypeTokens.ts), while streaming and after.
 */
export function Markdown({ text, tokens }: { text: string; tokens?: readonly TokenLike[] }) {
  const layout = useMemo(() => (tokens ? layoutTokens(tokens) : null), [tokens]);
  const rehype = useMemo(
    () => (layout ? [KATEX, HIGHLIGHT, [rehypeTokens, layout] as [typeof rehypeTokens, TokenPluginOptions]] : [KATEX, HIGHLIGHT]),
    [layout],
  );
  return (
    <div className="markdown" data-testid="markdown">
      <ReactMarkdown components={components} urlTransform={(url) => safeHref(url)} remarkPlugins={REMARK} rehypePlugins={rehype}>
        {layout ? layout.source : text}
      </ReactMarkdown>
    </div>
  );
}
