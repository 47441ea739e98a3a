/**
 * Finished answers as Markdown. Model output is text, never HTML that runs: react-markdown builds React
 * elements from a syntax tree and, without rehype-raw, raw HTML in the text is not rendered; link and
 * image URLs go through its default urlTransform, which drops javascript: and other unsafe schemes.
 */
import ReactMarkdown from "react-markdown";
import rehypeHighlight from "rehype-highlight";

export function Markdown({ text }: { text: string }) {
  return (
    <div className="markdown" data-testid="markdown">
      <ReactMarkdown skipHtml rehypePlugins={[[rehypeHighlight, { detect: true, ignoreMissing: true }]]}>
        {text}
      </ReactMarkdown>
    </div>
  );
}
