/**
 * `npm run eval` end to end on the stories260K pair, small: a router trained here, a few prompts,
 * two shares. Checks the --json contract, the files, and orderings that must hold on any data.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalModel } from "../../inference/localModel.js";
import { collectTeacherForced, newLabelSet } from "../../router/training/collect.js";
import { parseFeatureSpec } from "../../router/features.js";
import { trainFromLabels } from "../../router/training/pipeline.js";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";
import { storiesPair } from "../helpers/pair.js";

noteMissingShared("npm run eval end to end");
const run = promisify(execFile);

type Row = Record<string, number | string | null> & { spread?: Record<string, number | null> };

describe.skipIf(!hasStories)("npm run eval (stories260K pair)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tandem-eval-"));
  let routerFile: string;
  let text: string;
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  beforeAll(async () => {
    const files = (await storiesPair())!;
    const slm = await LocalModel.load(files.slm, { contextSize: 512, hiddenState: true });
    const llm = await LocalModel.load(files.llm, { contextSize: 512 });
    try {
      const set = newLabelSet(slm, llm, parseFeatureSpec("hidden,top1,dist"));
      const prompts = ["once upon a time, there was a", "the cat sat on the", "tom and his mom went to the"];
      await collectTeacherForced(
        set,
        slm,
        llm,
        prompts.map((p) => ({ prompt: slm.tokenizeText(p) })),
        { continuationTokens: 32 },
      );
      routerFile = trainFromLabels(set, { seed: 1, maxEpochs: 5, outDir: dir }).file;
    } finally {
      await slm.dispose();
      await llm.dispose();
    }
    text = path.join(dir, "story.txt");
    fs.writeFileSync(
      text,
      "the big red ball rolled down the hill. a small bird sang in the old tree. the girl found a shiny key under the mat. the boy and his dog went to the lake to swim.",
    );
  }, 180_000);

  /** A small eval run (4 prompts × 16 tokens, shares 10% and 30%): its JSON rows and the table it wrote. */
  async function evalRun(out: string, extra: string[] = []): Promise<{ rows: Row[]; table: string }> {
    const { stdout } = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        "eval/main.ts",
        "--router",
        routerFile,
        "--no-train",
        "--text",
        text,
        "--limit",
        "4",
        "--max-tokens",
        "16",
        "--shares",
        "0.1,0.3",
        "--novel-ngram",
        "12",
        "--out",
        out,
        "--json",
        ...extra,
      ],
      { cwd: repoRoot, env: { ...process.env, TANDEM_ROUTER_DIR: dir } },
    );
    const last = stdout.trim().split("\n").at(-1)!;
    return { rows: (JSON.parse(last) as { eval: { rows: Row[] } }).eval.rows, table: fs.readFileSync(path.join(out, "table.txt"), "utf8") };
  }

  it("prints the table, writes CSV/JSON/SVG, and ends with the --json line", { timeout: 180_000 }, async () => {
    const out = path.join(dir, "out");
    const { rows, table } = await evalRun(out);
    for (const r of ["slm-only", "llm-only", "random", "confidence", "learned", "oracle"])
      expect(rows.some((x) => x.router === r)).toBe(true);
    for (const r of rows)
      for (const k of ["router", "tau", "cloudShare", "llmAgreement", "logprobGapClosed", "accuracy"]) expect(r).toHaveProperty(k);
    const at = (router: string, s: number) => rows.find((r) => r.router === router && r.targetShare === s)!;
    const slmOnly = rows.find((r) => r.router === "slm-only")!;
    expect(rows.find((r) => r.router === "llm-only")!.logprobGapClosed).toBe(1);
    expect(slmOnly.logprobGapClosed).toBe(0);
    for (const s of [0.1, 0.3]) {
      // at equal teacher-forced share nobody beats the oracle, and nobody does worse than the SLM alone
      for (const r of ["random", "confidence", "learned"]) {
        expect(at(r, s).llmAgreement as number).toBeLessThanOrEqual((at("oracle", s).llmAgreement as number) + 1e-9);
        expect(at(r, s).llmAgreement as number).toBeGreaterThanOrEqual(slmOnly.llmAgreement as number);
      }
      expect(Math.abs((at("learned", s).cloudShare as number) - s)).toBeLessThan(0.1);
    }
    expect(at("oracle", 0.3).llmAgreement as number).toBeGreaterThanOrEqual(at("oracle", 0.1).llmAgreement as number);
    for (const f of ["table.txt", "results.csv", "results.json", "plot.svg"])
      expect(fs.statSync(path.join(out, f)).size).toBeGreaterThan(100);
    expect(fs.readFileSync(path.join(out, "table.txt"), "utf8")).toMatch(/teacher-forced LLM agreement/);
    // greedy (eval's default, Precise): no seeds, no spread, the table as it always was
    expect(rows.some((r) => "spread" in r)).toBe(false);
    expect(table).not.toMatch(/±|sampled/);
    expect(fs.readFileSync(path.join(out, "results.csv"), "utf8").split("\n")[0]).toBe(
      "router,targetShare,tau,cloudShare,llmAgreement,freeCloudShare,meanLogprob,logprobGapClosed,accuracy,cloudCalls,tokensPerSecond",
    );
  });

  it("--temperature 1 --seeds 3: every router and baseline reports the mean and spread over the seeds", { timeout: 240_000 }, async () => {
    const out = path.join(dir, "sampled");
    const { rows, table } = await evalRun(out, ["--temperature", "1", "--top-k", "40", "--seeds", "3"]);
    for (const r of ["slm-only", "llm-only", "random", "confidence", "learned", "oracle"])
      expect(rows.some((x) => x.router === r)).toBe(true);
    for (const r of rows) {
      expect(r.spread, r.router as string).toMatchObject({ seeds: 3 });
      expect(Number.isFinite(r.spread!.meanLogprob), r.router as string).toBe(true);
    }
    // sampling varies the text: some row's log-prob differs between seeds
    expect(rows.some((r) => (r.spread!.meanLogprob as number) > 0)).toBe(true);
    // the ends still anchor the gap: each seed's own SLM-only and LLM-only runs
    expect(rows.find((r) => r.router === "slm-only")!.logprobGapClosed).toBe(0);
    expect(rows.find((r) => r.router === "llm-only")!.logprobGapClosed).toBe(1);
    expect(table).toMatch(/sampled: temperature 1, top-k 40, top-p 1, min-p 0, no penalties · 3 seeds \(1–3\)/);
    expect(table).toMatch(/mean ±sd over 3 seeds/);
    expect(table).toMatch(/% ±\d/);
    expect(fs.readFileSync(path.join(out, "results.csv"), "utf8").split("\n")[0]).toMatch(/,seeds,freeCloudShareSd,meanLogprobSd,/);
  });

  it("a bad sampling flag is a usage error before any model loads", async () => {
    const err = await run(process.execPath, ["--import", "tsx", "eval/main.ts", "--temperature", "hot"], { cwd: repoRoot }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toMatch(/--temperature must be a number/);
  });
});
