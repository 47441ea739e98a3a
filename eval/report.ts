/**
 * Output of an evaluation: printed tables, CSV, JSON and an SVG plot (quality against cloud share,
 * one curve per router; left teacher-forced LLM agreement, right free-running gap closed).
 */
import { EVAL_ROUTERS, type EvalResult, type EvalRow, type SummaryRow } from "./harness.js";

const pct = (x: number | null, d = 1) => (x == null || !Number.isFinite(x) ? "—" : `${(x * 100).toFixed(d)}%`);
const num = (x: number | null, d = 3) => (x == null || !Number.isFinite(x) ? "—" : x.toFixed(d));

function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...body.map(line)].join("\n");
}

/** A free-running value, and with sampling its spread over the seeds: "12.3% ±1.5%". */
const withSpread = (value: string, sd: number | null | undefined, f: (x: number | null) => string) =>
  sd === undefined ? value : `${value} ±${f(sd)}`;

export function rowsTable(rows: readonly EvalRow[]): string {
  return table(
    ["router", "target", "τ", "share(TF)", "LLM agree", "share(free)", "mean logprob", "gap closed", "accuracy", "calls", "tok/s"],
    rows.map((r) => [
      r.router,
      pct(r.targetShare),
      r.tau == null ? "—" : num(r.tau, 4),
      pct(r.cloudShare),
      pct(r.llmAgreement),
      withSpread(pct(r.freeCloudShare), r.spread?.freeCloudShare, pct),
      withSpread(num(r.meanLogprob), r.spread?.meanLogprob, num),
      withSpread(pct(r.logprobGapClosed), r.spread?.logprobGapClosed, pct),
      withSpread(pct(r.accuracy), r.spread && r.accuracy != null ? r.spread.accuracy : undefined, pct),
      r.spread ? r.cloudCalls.toFixed(1) : String(r.cloudCalls),
      r.tokensPerSecond.toFixed(0),
    ]),
  );
}

export function summaryTable(summary: readonly SummaryRow[], shares: readonly number[]): string {
  const routers = [...new Set(summary.map((s) => s.router))];
  const get = (r: string, s: number) => summary.find((x) => x.router === r && Math.abs(x.share - s) < 1e-9);
  const block = (title: string, f: (x: SummaryRow | undefined) => string) =>
    `${title}\n` +
    table(
      ["router", ...shares.map((s) => pct(s, 1))],
      routers.map((r) => [r, ...shares.map((s) => f(get(r, s)))]),
    );
  return [
    block("teacher-forced LLM agreement", (x) => pct(x?.llmAgreement ?? null)),
    block("teacher-forced gain over SLM-only, as a share of the oracle's gain", (x) => pct(x?.oracleGainShare ?? null, 0)),
    block("free-running: share of the SLM-only → LLM-only log-prob gap closed (interpolated at the share)", (x) =>
      pct(x?.logprobGapClosed ?? null, 0),
    ),
    ...(summary.some((x) => x.accuracy != null) ? [block("free-running task accuracy", (x) => pct(x?.accuracy ?? null))] : []),
  ].join("\n\n");
}

export function toCsv(rows: readonly EvalRow[]): string {
  const cols: (keyof EvalRow)[] = [
    "router",
    "targetShare",
    "tau",
    "cloudShare",
    "llmAgreement",
    "freeCloudShare",
    "meanLogprob",
    "logprobGapClosed",
    "accuracy",
    "cloudCalls",
    "tokensPerSecond",
  ];
  const cell = (v: unknown) => (v == null || (typeof v === "number" && !Number.isFinite(v)) ? "" : String(v));
  // with sampling: the seeds and each free-running value's spread over them
  const spreadCols = ["seeds", "freeCloudShare", "meanLogprob", "logprobGapClosed", "accuracy"] as const;
  const sampled = rows.some((r) => r.spread);
  const head = [...cols, ...(sampled ? spreadCols.map((c) => (c === "seeds" ? c : `${c}Sd`)) : [])];
  const line = (r: EvalRow) => [...cols.map((c) => cell(r[c])), ...(sampled ? spreadCols.map((c) => cell(r.spread?.[c])) : [])];
  return [head.join(","), ...rows.map((r) => line(r).join(","))].join("\n") + "\n";
}

/** The `--json` last line: {"eval": {"rows": [...]}} with the fields the issue names first. */
export function jsonLine(res: EvalResult): string {
  const rows = res.rows.map((r) => ({
    router: r.router,
    tau: r.tau,
    cloudShare: r.cloudShare,
    llmAgreement: r.llmAgreement,
    logprobGapClosed: Number.isFinite(r.logprobGapClosed) ? r.logprobGapClosed : null,
    accuracy: r.accuracy,
    targetShare: r.targetShare,
    freeCloudShare: r.freeCloudShare,
    meanLogprob: r.meanLogprob,
    cloudCalls: r.cloudCalls,
    tokensPerSecond: r.tokensPerSecond,
    ...(r.spread ? { spread: r.spread } : {}),
  }));
  return JSON.stringify({ eval: { rows, summary: res.summary, counted: res.counted, disagreementRate: res.disagreementRate } });
}

const COLORS: Record<string, string> = {
  random: "#999999",
  confidence: "#1f77b4",
  learned: "#d62728",
  distilled: "#ff7f0e",
  oracle: "#2ca02c",
  "slm-only": "#000000",
  "llm-only": "#9467bd",
};

export function toSvg(res: EvalResult, title: string): string {
  const W = 460;
  const H = 340;
  const m = { l: 56, r: 16, t: 40, b: 48 };
  const maxX = Math.min(
    1,
    Math.max(...res.rows.filter((r) => r.router !== "llm-only").map((r) => Math.max(r.cloudShare, r.freeCloudShare))) * 1.05,
  );
  const panel = (ox: number, label: string, pts: (r: EvalRow) => [number, number], yMin: number, yMax: number) => {
    const X = (x: number) => ox + m.l + (x / maxX) * (W - m.l - m.r);
    const Y = (y: number) => m.t + (1 - (y - yMin) / (yMax - yMin)) * (H - m.t - m.b);
    const parts: string[] = [];
    parts.push(`<text x="${ox + W / 2}" y="22" text-anchor="middle" font-size="13">${label}</text>`);
    parts.push(
      `<line x1="${X(0)}" y1="${Y(yMin)}" x2="${X(maxX)}" y2="${Y(yMin)}" stroke="#333"/><line x1="${X(0)}" y1="${Y(yMin)}" x2="${X(0)}" y2="${Y(yMax)}" stroke="#333"/>`,
    );
    for (let i = 0; i <= 5; i++) {
      const xv = (maxX * i) / 5;
      const yv = yMin + ((yMax - yMin) * i) / 5;
      parts.push(`<text x="${X(xv)}" y="${Y(yMin) + 16}" text-anchor="middle" font-size="10">${(xv * 100).toFixed(0)}%</text>`);
      parts.push(`<text x="${X(0) - 6}" y="${Y(yv) + 3}" text-anchor="end" font-size="10">${(yv * 100).toFixed(0)}%</text>`);
      parts.push(`<line x1="${X(0)}" y1="${Y(yv)}" x2="${X(maxX)}" y2="${Y(yv)}" stroke="#eee"/>`);
    }
    parts.push(`<text x="${ox + W / 2}" y="${H - 8}" text-anchor="middle" font-size="11">cloud share</text>`);
    const slm = res.rows.find((r) => r.router === "slm-only")!;
    const llm = res.rows.find((r) => r.router === "llm-only")!;
    for (const [r, dash] of [
      [llm, "4 3"],
      [slm, "2 2"],
    ] as const) {
      const y = pts(r)[1];
      parts.push(`<line x1="${X(0)}" y1="${Y(y)}" x2="${X(maxX)}" y2="${Y(y)}" stroke="${COLORS[r.router]}" stroke-dasharray="${dash}"/>`);
    }
    for (const router of EVAL_ROUTERS) {
      const ps = [slm, ...res.rows.filter((r) => r.router === router)].map(pts).sort((a, b) => a[0] - b[0]);
      if (ps.length < 2) continue;
      const d = ps.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(Math.max(yMin, Math.min(yMax, y))).toFixed(1)}`).join(" ");
      parts.push(`<path d="${d}" fill="none" stroke="${COLORS[router]}" stroke-width="2"/>`);
      for (const [x, y] of ps)
        parts.push(
          `<circle cx="${X(x).toFixed(1)}" cy="${Y(Math.max(yMin, Math.min(yMax, y))).toFixed(1)}" r="2.5" fill="${COLORS[router]}"/>`,
        );
    }
    return parts.join("\n");
  };
  const tfVals = res.rows.map((r) => r.llmAgreement);
  const tfMin = Math.max(0, Math.floor(Math.min(...tfVals) * 10) / 10);
  const gapVals = res.rows.map((r) => r.logprobGapClosed).filter(Number.isFinite);
  const gMin = Math.min(0, Math.floor(Math.min(...gapVals) * 10) / 10);
  const legend = ["slm-only", "llm-only", ...EVAL_ROUTERS]
    .map(
      (n, i) =>
        `<rect x="${20 + i * 115}" y="${H + 4}" width="12" height="12" fill="${COLORS[n]}"/><text x="${36 + i * 115}" y="${H + 14}" font-size="12">${n}</text>`,
    )
    .join("\n");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 50}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W}" y="${H + 40}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(title)}</text>
${panel(0, "teacher-forced LLM agreement", (r) => [r.cloudShare, r.llmAgreement], tfMin, 1)}
${panel(W, "free-running: log-prob gap closed", (r) => [r.freeCloudShare, r.logprobGapClosed], gMin, 1)}
${legend}
</svg>
`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}
