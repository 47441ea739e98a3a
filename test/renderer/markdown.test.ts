/** Model output is text: Markdown rendering never turns it into HTML that runs. */
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { Markdown } from "../../renderer/components/Markdown.js";

const render = (text: string) => renderToStaticMarkup(createElement(Markdown, { text }));

describe("Markdown of an answer", () => {
  it("renders Markdown and highlights code blocks", () => {
    const html = render("**bold** and `x`\n\n```js\nconst a = 1;\n```");
    expect(html).toContain("<strong>bold</strong>");
    expect(html).toMatch(/<code class="hljs language-js">.*hljs-keyword/s);
  });

  it("raw HTML in the output never becomes elements", () => {
    const html = render('hi <img src=x onerror="alert(1)"> <script>alert(2)</script>\n\n<iframe src="https://evil"></iframe>');
    expect(html).not.toMatch(/<img|<script|<iframe|onerror/i);
  });

  it("javascript: links are neutralised", () => {
    const html = render("[click](javascript:alert(1))");
    expect(html).not.toContain("javascript:");
  });
});
