/** Evaluation maths, dataset adapters and outputs (no models). */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { DATASETS, lastNumber, loadDataset, readChoice } from "../../router/training/datasets.js";
import { summarise, type EvalResult, type EvalRow } from "../../eval/harness.js";
import { gapClosed, interpolate } from "../../eval/metrics.js";
import { jsonLine, toCsv, toSvg } from "../../eval/report.js";
import { defaultSharedDir } from "../../router/training/text.js";

const row = (router: string, s: number, agree: number, freeShare: number, gap: number): EvalRow => ({
  router,
  tau: 0.1,
  targetShare: s,
  cloudShare: s,
  llmAgreement: agree,
  freeCloudShare: freeShare,
  meanLogprob: -1,
  logprobGapClosed: gap,
  accuracy: null,
  cloudCalls: 1,
  tokensPerSecond: 100,
});

describe("metrics", () => {
  it("gap closed: 0 at SLM-only, 1 at LLM-only, linear between", () => {
    expect(gapClosed(-2, -2, -1)).toBe(0);
    expect(gapClosed(-1, -2, -1)).toBe(1);
    expect(gapClosed(-1.6, -2, -1)).toBeCloseTo(0.4, 12);
    expect(gapClosed(-1, -1, -1)).toBeNaN();
  });
  it("interpolates inside the measured range only", () => {
    const pts = [
      { x: 0, y: 0 },
      { x: 0.2, y: 0.4 },
      { x: 1, y: 1 },
    ];
    expect(interpolate(pts, 0.1)).toBeCloseTo(0.2, 12);
    expect(interpolate(pts, 0.6)).toBeCloseTo(0.7, 12);
    expect(interpolate([{ x: 0.1, y: 1 }], 0.05)).toBeNull();
  });
  it("summary: gain as a share of the oracle's, free-running interpolated at the share", () => {
    const rows = [
      row("slm-only", 0, 0.6, 0, 0),
      row("llm-only", 1, 1, 1, 1),
      row("oracle", 0.1, 0.7, 0.1, 0.3),
      row("learned", 0.1, 0.68, 0.2, 0.4),
    ];
    const s = summarise(rows, [0.1]);
    const learned = s.find((x) => x.router === "learned")!;
    expect(learned.oracleGainShare).toBeCloseTo(0.8, 12);
    expect(learned.logprobGapClosed).toBeCloseTo(0.2, 12); // (0,0)–(0.2,0.4) at 0.1
    expect(s.find((x) => x.router === "oracle")!.oracleGainShare).toBe(1);
  });
  it("--json line, CSV and SVG carry every router", () => {
    const rows = ["slm-only", "llm-only", "random", "confidence", "learned", "oracle"].map((r, i) =>
      row(r, i / 10, 0.6 + i / 20, i / 10, i / 6),
    );
    const res: EvalResult = {
      rows,
      summary: summarise(rows, [0.1]),
      counted: { teacherForced: 1, teacherForcedAll: 1, freeRunningSlmOnly: 1 },
      disagreementRate: 0.4,
      routerCostMs: {},
    };
    const j = JSON.parse(jsonLine(res));
    expect(Object.keys(j.eval.rows[0]).slice(0, 6)).toEqual([
      "router",
      "tau",
      "cloudShare",
      "llmAgreement",
      "logprobGapClosed",
      "accuracy",
    ]);
    expect(j.eval.rows.map((r: { router: string }) => r.router)).toEqual(rows.map((r) => r.router));
    expect(toCsv(rows).trim().split("\n")).toHaveLength(7);
    const svg = toSvg(res, "t");
    expect(svg.match(/<path /g)).toHaveLength(8); // 4 routers × 2 panels
    expect(svg).toContain("<svg");
  });
});

describe("dataset adapters", () => {
  it("reads a choice letter and a final number", () => {
    expect(readChoice(" B. a bank", ["A", "B", "C"])).toBe("B");
    expect(readChoice("The answer is (C)", ["A", "B", "C"])).toBe("C");
    expect(readChoice("Because it is big", ["A", "B"])).toBeNull(); // no standalone letter
    expect(readChoice("2", ["1", "2", "3", "4"])).toBe("2");
    expect(lastNumber("so 3 + 4 = 7. The answer is 1,234.")).toBe("1234");
    expect(lastNumber("no digits")).toBeNull();
  });

  const dataDir = path.join(defaultSharedDir(), "data");
  const have = fs.existsSync(dataDir);
  it.skipIf(!have)(`parses and checks every dataset (skipped: ${dataDir} missing)`, () => {
    for (const name of Object.keys(DATASETS)) {
      const { items } = loadDataset(name, 5, dataDir);
      expect(items).toHaveLength(5);
      for (const it of items) {
        expect(it.message.length).toBeGreaterThan(10);
        expect(it.check(it.reference!)).toBe(true); // the gold answer passes its own check
        expect(it.check("")).toBe(false);
      }
    }
    const tq = loadDataset("truthfulqa", 40, dataDir).items;
    // shuffled: the correct choice is not always "A"
    expect(new Set(tq.map((t) => t.reference![0])).size).toBeGreaterThan(1);
  });
});
