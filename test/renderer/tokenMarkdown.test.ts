/**
 * Token spans → the rendered Markdown tree: every token keeps an element with its origin and index,
 * and each rendered character sits in the element of the token it came from — across Markdown syntax,
 * in highlighted code, tables, math, multi-byte characters, and tokens spanning several nodes.
 */
import type { Element, Root, RootContent } from "hast";
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import rehypeHighlight from "rehype-highlight";
import rehypeKatex from "rehype-katex";
import remarkGfm from "remark-gfm";
import remarkMath from "remark-math";
import remarkParse from "remark-parse";
import remarkRehype from "remark-rehype";
import { unified } from "unified";
import { describe, expect, it } from "vitest";
import type { Origin } from "../../shared/events.js";
import { Markdown } from "../../renderer/components/Markdown.js";
import { rehypeTokens } from "../../renderer/markdown/rehypeTokens.js";
import { layoutTokens, spanAt, type TokenLike } from "../../renderer/markdown/tokenSpans.js";

const ORIGINS: Origin[] = ["local", "cloud", "fallback"];
const toks = (texts: string[]): TokenLike[] => texts.map((text, index) => ({ index, text, origin: ORIGINS[index % 3] }));

interface Piece {
  index: number;
  origin: string;
  text: string;
  /** tag names from the root down to the piece */
  path: string[];
  mark: boolean;
}

function render(tokens: TokenLike[]): { tree: Root; pieces: Piece[] } {
  const layout = layoutTokens(tokens);
  const proc = unified()
    .use(remarkParse)
    .use(remarkGfm)
    .use(remarkMath)
    .use(remarkRehype, { allowDangerousHtml: true }) // as react-markdown does (it shows raw HTML as text)
    .use(rehypeKatex)
    .use(rehypeHighlight, { detect: true })
    .use(rehypeTokens, layout);
  const tree = proc.runSync(proc.parse(layout.source)) as Root;
  const pieces: Piece[] = [];
  const walk = (n: Root | Element, path: string[]) => {
    for (const c of n.children as RootContent[]) {
      if (c.type !== "element") continue;
      if (c.properties.dataIndex !== undefined) {
        const text = c.children.map((x) => (x.type === "text" ? x.value : "")).join("");
        pieces.push({
          index: Number(c.properties.dataIndex),
          origin: String(c.properties.dataOrigin),
          text,
          path,
          mark: (c.properties.className as string[]).includes("tok-mark"),
        });
      } else walk(c, [...path, c.tagName]);
    }
  };
  walk(tree, []);
  return { tree, pieces };
}

const textOf = (pieces: Piece[], index: number) =>
  pieces
    .filter((p) => p.index === index)
    .map((p) => p.text)
    .join("");
const every = (tokens: TokenLike[], pieces: Piece[]) =>
  tokens.every((t) => pieces.some((p) => p.index === t.index && p.origin === t.origin));
/** pieces and markers stand in token order: a marker is where its syntax was */
const inOrder = (pieces: Piece[]) => pieces.every((p, i) => i === 0 || pieces[i - 1].index <= p.index);

describe("token spans", () => {
  it("lay tokens end to end; spanAt finds the token of an offset, skipping empty ones", () => {
    const { source, spans } = layoutTokens(toks(["ab", "", "c", "dé"]));
    expect(source).toBe("abcdé");
    expect(spans.map((s) => [s.start, s.end])).toEqual([
      [0, 2],
      [2, 2],
      [2, 3],
      [3, 5],
    ]);
    expect([0, 1, 2, 3, 4].map((o) => spanAt(spans, o))).toEqual([0, 0, 2, 3, 3]);
  });
});

describe("tokens in the rendered Markdown", () => {
  it("plain text: one piece per token, the token's text, its origin", () => {
    const tokens = toks(["Once", " upon", " a", " time"]);
    const { pieces } = render(tokens);
    expect(pieces.map((p) => [p.index, p.text, p.origin])).toEqual(tokens.map((t) => [t.index, t.text, t.origin]));
  });

  it("syntax-only tokens get an empty marker; a token split across syntax keeps its text", () => {
    // "**" is syntax only; "bo" + "ld**" spans the text and the closing syntax; "# " a heading marker
    const tokens = toks(["# ", "Title", "\n\n", "**", "bo", "ld**", " end"]);
    const { pieces } = render(tokens);
    expect(every(tokens, pieces)).toBe(true);
    expect(inOrder(pieces)).toBe(true);
    expect(pieces.find((p) => p.index === 0)!.mark).toBe(true);
    expect(textOf(pieces, 1)).toBe("Title");
    expect(pieces.find((p) => p.index === 1)!.path).toContain("h1");
    expect(pieces.find((p) => p.index === 3)!.mark).toBe(true);
    expect(textOf(pieces, 4)).toBe("bo");
    expect(textOf(pieces, 5)).toBe("ld");
    expect(pieces.find((p) => p.index === 5)!.path).toContain("strong");
    expect(textOf(pieces, 6)).toBe(" end");
  });

  it("a token spanning several nodes has a piece in each", () => {
    // "a *b" covers text, the opening syntax and the emphasis
    const tokens = toks(["x a *b", "* c"]);
    const { pieces } = render(tokens);
    const first = pieces.filter((p) => p.index === 0);
    expect(first.map((p) => p.text)).toEqual(["x a ", "b"]);
    expect(first[1].path).toContain("em");
    expect(textOf(pieces, 1)).toBe(" c");
  });

  it("highlighted code: tokens inside the code block keep their pieces, the fence line is syntax", () => {
    const tokens = toks(["```", "js", "\n", "const", " a", " =", " 1", ";", "\n", "```"]);
    const { pieces } = render(tokens);
    expect(every(tokens, pieces)).toBe(true);
    for (const i of [3, 4, 5, 6, 7]) {
      expect(textOf(pieces, i)).toBe(tokens[i].text);
      expect(pieces.find((p) => p.index === i)!.path.slice(0, 2)).toEqual(["pre", "code"]);
    }
    expect(inOrder(pieces)).toBe(true);
    expect(pieces.find((p) => p.index === 1)!.mark).toBe(true); // "js" is the info string, not code
    expect(pieces.some((p) => p.index === 3 && p.path.includes("span"))).toBe(true); // inside a highlight span
  });

  it("tables: cell text in cells, pipes are syntax, no span where a table allows none", () => {
    const tokens = toks(["| a", " | b |", "\n", "|---|---|", "\n", "| 1", " | 2", " |"]);
    const { pieces } = render(tokens);
    expect(every(tokens, pieces)).toBe(true);
    const cell = (i: number) => pieces.filter((p) => p.index === i && p.text.trim());
    expect(cell(0)[0].path.slice(-1)).toEqual(["th"]);
    expect(
      cell(0)
        .map((p) => p.text.trim())
        .join(""),
    ).toBe("a");
    expect(
      cell(1)
        .map((p) => p.text.trim())
        .join(""),
    ).toBe("b");
    expect(cell(5)[0].path.slice(-1)).toEqual(["td"]);
    expect(
      cell(6)
        .map((p) => p.text.trim())
        .join(""),
    ).toBe("2");
    for (const p of pieces) expect(["table", "thead", "tbody", "tr"]).not.toContain(p.path[p.path.length - 1]);
  });

  it("multi-byte characters: an emoji and accents stay whole, in the token that carries them", () => {
    const tokens = toks(["Café", "", " 🎉", " naïve ", "漢字"]);
    const { pieces } = render(tokens);
    expect(every(tokens, pieces)).toBe(true);
    expect(textOf(pieces, 0)).toBe("Café");
    expect(pieces.find((p) => p.index === 1)!.mark).toBe(true); // empty text: a marker
    expect(textOf(pieces, 2)).toBe(" 🎉");
    expect(textOf(pieces, 4)).toBe("漢字");
    for (const p of pieces) expect(p.text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });

  it("math: every token of a formula has an element; KaTeX's screen-reader copy is left alone", () => {
    const tokens = toks(["Area ", "$", "x", "^2", "$", " done"]);
    const { pieces } = render(tokens);
    expect(every(tokens, pieces)).toBe(true);
    expect(pieces.every((p) => !p.path.includes("math"))).toBe(true);
    expect(pieces.some((p) => p.index === 2 && p.text === "x")).toBe(true);
    expect(textOf(pieces, 5)).toBe(" done");
  });

  it("the rendered text is the Markdown's text: nothing lost or added by the split", () => {
    const texts = ["Hello", " **", "world", "**", "\n\n", "- one", "\n", "- two", "\n\n", "`x`", " & ", "&amp;", " <b>", "raw", "</b>"];
    const plain = unified().use(remarkParse).use(remarkGfm).use(remarkRehype, { allowDangerousHtml: true });
    // raw HTML counts as the characters it is, as react-markdown shows it
    const text = (t: Root | RootContent): string =>
      "value" in t && (t.type === "text" || t.type === "raw") ? t.value : "children" in t ? t.children.map(text).join("") : "";
    const expected = text(plain.runSync(plain.parse(texts.join(""))) as Root);
    expect(expected).toContain("<b>raw</b>");
    const { tree, pieces } = render(toks(texts));
    expect(text(tree)).toBe(expected);
    expect(textOf(pieces, 12)).toBe(" <b>");
    expect(every(toks(texts), pieces)).toBe(true);
  });

  it("renders through React with a data-origin element for every token and no raw HTML", () => {
    const tokens = toks(["Hi", " <img src=x onerror=alert(1)>", " |a|", "\n", "|-|", "\n", "|1|"]);
    const html = renderToStaticMarkup(createElement(Markdown, { text: "", tokens }));
    for (const t of tokens) expect(html).toContain(`data-index="${t.index}"`);
    expect(html).not.toMatch(/<img\b/);
    expect(html).toContain('data-origin="cloud"');
  });
});
