/**
 * The router's score along the answer: axes (token position; score 0–1), the τ in force as a labelled
 * step line, cloud and fallback tokens marked. Long answers are drawn per bucket of a few pixels (mean
 * line, minimum line). Hover shows the token; a click pins it in the inspector and scrolls to it.
 */
import { useLayoutEffect, useMemo, useRef, useState, type MouseEvent } from "react";
import type { StoredMessage } from "../../shared/bridge";
import { useApp } from "../context";
import { bucketTokens, type Bucket } from "../state/chartBuckets";
import { tokenElement } from "./AnswerBody";
import { visibleText } from "./VisibleText";

const H = 128;
const M = { left: 34, right: 44, top: 10, bottom: 22 };
/** pixels per bucket at least: below that, tokens share a bucket */
const PX_PER_BUCKET = 4;

export function ConfidenceChart({ message }: { message: StoredMessage }) {
  const { stores } = useApp();
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(560);
  const [hover, setHover] = useState<number | null>(null);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(Math.max(200, el.clientWidth)));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const tokens = message.tokens ?? [];
  const pw = width - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const buckets = useMemo(() => bucketTokens(tokens, pw / PX_PER_BUCKET), [tokens, pw]);
  const n = tokens.length;
  const B = buckets.length;
  if (n < 2) return null;
  const grouped = B < n;
  const x = (b: number) => M.left + ((b + 0.5) / B) * pw;
  const y = (c: number) => M.top + (1 - c) * ph;
  const path = (f: (b: Bucket) => number) => buckets.map((b, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(f(b)).toFixed(1)}`).join("");
  const tauPath = buckets
    .map(
      (b, i) => `${i ? "L" : "M"}${(M.left + (i / B) * pw).toFixed(1)},${y(b.tau).toFixed(1)}H${(M.left + ((i + 1) / B) * pw).toFixed(1)}`,
    )
    .join("");
  const lastTau = buckets[B - 1].tau;

  const tokenAt = (e: MouseEvent<SVGRectElement>): number => {
    const r = e.currentTarget.getBoundingClientRect();
    const b = buckets[Math.min(B - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * B)))];
    return b.lowest;
  };
  const pin = (index: number) => {
    stores.ui.setState({ pinned: { messageId: message.id, index }, hovered: null });
    const answer = document.querySelector(`[data-message-id="${message.id}"]`);
    const el = answer && tokenElement(answer, index);
    el?.scrollIntoView({ block: "center" });
    el?.focus({ preventScroll: true });
  };
  const h = hover === null ? null : tokens[hover];
  const hb = hover === null ? -1 : buckets.findIndex((b) => b.from <= hover && hover < b.to);
  return (
    <figure className="chart-box" ref={box}>
      <svg
        className="chart"
        data-testid="confidence-chart"
        width={width}
        height={H}
        role="img"
        aria-label={`Router score of each of the ${n} tokens against τ; click to inspect a token`}
      >
        {[0, 0.5, 1].map((v) => (
          <g key={v}>
            <line className="chart-grid" x1={M.left} x2={M.left + pw} y1={y(v)} y2={y(v)} />
            <text className="chart-label" x={M.left - 6} y={y(v) + 4} textAnchor="end">
              {v}
            </text>
          </g>
        ))}
        <line className="chart-axis" x1={M.left} x2={M.left} y1={M.top} y2={M.top + ph} />
        <line className="chart-axis" x1={M.left} x2={M.left + pw} y1={M.top + ph} y2={M.top + ph} />
        {[0, Math.floor((n - 1) / 2), n - 1].map((i) => (
          <text key={i} className="chart-label" x={M.left + ((i + 0.5) / n) * pw} y={H - 6} textAnchor="middle">
            {i + 1}
          </text>
        ))}
        {grouped && <path d={path((b) => b.min)} className="chart-min" />}
        <path d={path((b) => b.mean)} className="chart-conf" />
        <path d={tauPath} className="chart-tau" />
        <text className="chart-label chart-tau-label" x={M.left + pw + 4} y={y(lastTau) + 4}>
          τ {lastTau.toFixed(2)}
        </text>
        {buckets.map((b, i) =>
          b.cloud || b.fallback ? (
            <circle key={i} cx={x(i)} cy={y(b.min)} r={2.6} className={`chart-dot origin-${b.cloud ? "cloud" : "fallback"}`} />
          ) : null,
        )}
        {hb >= 0 && <line className="chart-cursor" x1={x(hb)} x2={x(hb)} y1={M.top} y2={M.top + ph} />}
        <rect
          className="chart-hit"
          data-testid="chart-hit"
          x={M.left}
          y={M.top}
          width={pw}
          height={ph}
          onMouseMove={(e) => setHover(tokenAt(e))}
          onMouseLeave={() => setHover(null)}
          onClick={(e) => pin(tokenAt(e))}
        />
      </svg>
      {h && hb >= 0 && (
        <div className="chart-tip" data-testid="chart-tooltip" style={{ left: Math.min(width - 180, Math.max(0, x(hb) - 60)) }}>
          #{h.index + 1} “{visibleText(h.text) || "∅"}” · {h.origin} · score {h.confidence.toFixed(2)} {h.confidence < h.tau ? "<" : "≥"} τ{" "}
          {h.tau.toFixed(2)}
        </div>
      )}
      <figcaption className="chart-caption muted small">
        Router score per token{grouped ? ` (mean, and the lowest, per ${Math.round(n / B)} tokens)` : ""} against τ (red); dots:{" "}
        <span className="cap-cloud">cloud</span>, <span className="cap-fallback">fallback</span>. Click to inspect.
      </figcaption>
    </figure>
  );
}
