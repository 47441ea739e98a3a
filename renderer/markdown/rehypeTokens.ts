/**
 * A rehype plugin that gives every token of an answer its place in the rendered Markdown: each text
 * node is split where tokens meet, and each piece is wrapped in
 * `<span class="tok origin-…" data-origin data-index>`, inside code, tables, math and emphasis alike.
 *
 * The rendered text is aligned with the source character by character: a text node's characters are
 * looked up in the source from a cursor that only moves forward, inside the source range of the node
 * (or of its nearest positioned ancestor: highlighted code and KaTeX output carry no positions of their
 * own). A rendered character not found nearby (an entity, a KaTeX glyph) goes to the token at the
 * cursor. Tokens with no rendered character (Markdown syntax such as `**`, a link's URL, an empty
 * text) get an empty marker span where they stand, so every token has an element.
 */
import type { Element, ElementContent, Root, RootContent, Text } from "hast";
import { spanAt, type TokenSpan } from "./tokenSpans";

export interface TokenPluginOptions {
  source: string;
  spans: readonly TokenSpan[];
}

interface Range {
  start: number;
  end: number;
}

type Parent = Root | Element;

/** how far ahead a rendered character is looked for in the source before it counts as "not found" */
const LOOKAHEAD = 200;
/** elements whose whitespace-only text is layout, not content (and where a span is not allowed) */
const BLOCK_PARENTS = new Set(["ul", "ol", "li", "table", "thead", "tbody", "tfoot", "tr", "blockquote", "section", "div"]);

export function rehypeTokens(opts: TokenPluginOptions) {
  return (tree: Root) => new Tokeniser(opts.source, opts.spans).run(tree);
}

class Tokeniser {
  private cursor = 0;
  /** spans (by position in `spans`) that have an element already */
  private placed: boolean[];
  /** the highest span position placed so far */
  private highest = -1;
  /** where the last piece went: trailing markers follow it */
  private last: { parent: Parent; at: number } | null = null;

  constructor(
    private readonly source: string,
    private readonly spans: readonly TokenSpan[],
  ) {
    this.placed = spans.map(() => false);
  }

  run(tree: Root): void {
    this.walk(tree, { start: 0, end: this.source.length });
    const rest = this.spans.map((_, i) => i).filter((i) => !this.placed[i]);
    if (!rest.length) return;
    const markers = rest.map((i) => this.marker(i));
    if (this.last) this.last.parent.children.splice(this.last.at, 0, ...markers);
    else tree.children.push(...(markers as RootContent[]));
  }

  private walk(node: Parent, range: Range): void {
    for (let i = 0; i < node.children.length; i++) {
      const child = node.children[i];
      if (child.type === "element") {
        if (hasClass(child, "katex-mathml")) continue; // the MathML copy is for screen readers; KaTeX's HTML is what shows
        this.walk(child, this.rangeOf(child, node, range));
      } else if (child.type === "text" || (child as { type: string }).type === "raw") {
        // raw HTML is text to us (react-markdown shows it as its characters; it is never parsed)
        const pieces = this.split(child as Text, node, range);
        if (!pieces) continue;
        node.children.splice(i, 1, ...(pieces as ElementContent[]));
        i += pieces.length - 1;
        this.last = { parent: node, at: i + 1 };
      }
    }
  }

  /** The source range an element's text comes from: its own position, else its parent's. */
  private rangeOf(el: Element, parent: Parent, inherited: Range): Range {
    const p = el.position;
    if (p?.start.offset === undefined || p.end.offset === undefined) return inherited;
    let start = p.start.offset;
    // a fenced block's position includes the fence line: its text starts on the next line
    const isFenced =
      (el.tagName === "pre" || (el.tagName === "code" && parent.type === "element" && parent.tagName === "pre")) &&
      /^ {0,3}(`{3,}|~{3,})/.test(this.source.slice(start, start + 8));
    if (isFenced) {
      const nl = this.source.indexOf("\n", start);
      start = nl < 0 || nl >= p.end.offset ? p.end.offset : nl + 1;
    }
    return { start, end: p.end.offset };
  }

  /** The text node cut into one span per run of characters from the same token (null: leave it alone). */
  private split(text: Text, parent: Parent, inherited: Range): Element[] | null {
    const value = text.value;
    if (!value || !this.spans.length) return null;
    const isBlock = parent.type === "root" || BLOCK_PARENTS.has(parent.tagName);
    if (isBlock && !value.trim()) return null;
    const range =
      text.position?.start.offset !== undefined && text.position.end.offset !== undefined
        ? { start: text.position.start.offset, end: text.position.end.offset }
        : inherited;
    const runs: { span: number; text: string }[] = [];
    for (const ch of value) {
      const span = this.locate(ch, range);
      const run = runs[runs.length - 1];
      if (run && run.span === span) run.text += ch;
      else runs.push({ span, text: ch });
    }
    const out: Element[] = [];
    for (const run of runs) {
      for (let j = this.highest + 1; j < run.span; j++) if (!this.placed[j]) out.push(this.marker(j));
      out.push(this.piece(run.span, run.text));
    }
    return out;
  }

  /** The span (position in `spans`) a rendered character comes from. */
  private locate(ch: string, range: Range): number {
    const from = Math.max(this.cursor, range.start);
    const j = this.source.indexOf(ch, from);
    if (j >= 0 && j + ch.length <= range.end && j - from <= LOOKAHEAD) {
      this.cursor = j + ch.length;
      return spanAt(this.spans, j);
    }
    // not in the source here: the token at the cursor (or the last one, past the end)
    return Math.max(0, spanAt(this.spans, Math.min(from, this.source.length - 1)));
  }

  private piece(span: number, value: string): Element {
    const first = !this.placed[span];
    this.placed[span] = true;
    this.highest = Math.max(this.highest, span);
    return this.element(span, first ? "token" : "token-part", ["tok"], [{ type: "text", value }]);
  }

  private marker(span: number): Element {
    this.placed[span] = true;
    this.highest = Math.max(this.highest, span);
    return this.element(span, "token", ["tok", "tok-mark"], []);
  }

  private element(span: number, testId: string, classes: string[], children: ElementContent[]): Element {
    const t = this.spans[span];
    return {
      type: "element",
      tagName: "span",
      properties: {
        className: [...classes, `origin-${t.origin}`],
        dataOrigin: t.origin,
        dataIndex: t.index,
        dataTestid: testId,
        tabIndex: -1,
      },
      children,
    };
  }
}

function hasClass(el: Element, name: string): boolean {
  const c = el.properties?.className;
  return Array.isArray(c) && c.includes(name);
}
