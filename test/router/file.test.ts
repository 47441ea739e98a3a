/** Router files: round trip, identity checks, and the learned-or-confidence selection. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  decodeSeen,
  encodeRouterFile,
  encodeSeen,
  routerFileName,
  RouterFileError,
  RouterMismatchError,
  writeRouterFile,
  type SlmBinding,
} from "../../router/file.js";
import { LearnedRouter, loadRouterFor } from "../../router/learnedRouter.js";
import { initMlp, routerSizes } from "../../router/mlp.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { errorMessage } from "../../shared/errors.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tandem-router-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const H = 6;
const spec = { hidden: true, top1: true, dist: false, topK: 0 };
const slmA = { identity: { name: "model-a", vocabHash: "a".repeat(64), vocabSize: 100 }, hiddenSize: H };
const bindingA: SlmBinding = { name: "model-a", vocabHash: "a".repeat(64), hiddenSize: H };

function writeFor(binding: SlmBinding, seed = 1): string {
  const params = initMlp(routerSizes(binding.hiddenSize + 1, binding.hiddenSize), seed);
  const file = path.join(dir, routerFileName(binding));
  writeRouterFile(file, encodeRouterFile({ slm: binding, features: spec, params }));
  return file;
}

describe("router file", () => {
  it("round-trips: the loaded router scores exactly like the trained parameters", () => {
    const params = initMlp(routerSizes(H + 1, H), 3);
    const file = path.join(dir, "rt.router.json");
    writeRouterFile(file, encodeRouterFile({ slm: bindingA, features: spec, params }));
    const loaded = LearnedRouter.load(file, slmA);
    const direct = new LearnedRouter(params, spec, bindingA);
    const f = { top1Prob: 0.4, hidden: Float64Array.from([0.1, -2, 0.3, 1, 0, 0.5]) };
    expect(loaded.score(f)).toBe(direct.score(f));
    expect(loaded.score(f)).toBeGreaterThanOrEqual(0);
    expect(loaded.score(f)).toBeLessThan(1);
    expect(loaded.needs).toEqual({ top1Prob: true, topK: 0, hidden: true });
  });

  it.each([
    ["another name", { ...slmA, identity: { ...slmA.identity, name: "model-b" } }, /name "model-a" ≠ "model-b"/],
    ["another hidden size", { ...slmA, hiddenSize: 8 }, /hidden size 6 ≠ 8/],
    [
      "another vocabulary",
      { ...slmA, identity: { ...slmA.identity, vocabHash: "b".repeat(64) } },
      /vocabulary aaaaaaaaaaaa… ≠ bbbbbbbbbbbb…/,
    ],
  ])("refuses to load for %s, naming both models", (_, other, detail) => {
    const file = writeFor(bindingA);
    let err: unknown;
    try {
      LearnedRouter.load(file, other);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RouterMismatchError);
    expect(errorMessage(err)).toMatch(detail);
    expect(errorMessage(err)).toMatch(/trained for the SLM "model-a" and cannot be used with/);
  });

  it("rejects files that are not router files, or damaged ones", () => {
    const notRouter = path.join(dir, "x.json");
    fs.writeFileSync(notRouter, JSON.stringify({ hello: 1 }));
    expect(() => LearnedRouter.load(notRouter, slmA)).toThrow(RouterFileError);
    const file = writeFor(bindingA);
    const j = JSON.parse(fs.readFileSync(file, "utf8"));
    j.network.weights[0] = j.network.weights[0].slice(0, 40);
    const bad = path.join(dir, "bad.json");
    fs.writeFileSync(bad, JSON.stringify(j));
    expect(() => LearnedRouter.load(bad, slmA)).toThrow(/layer 0 weights has 30 bytes, expected 84 float32 values/);
  });
});

it("carries the sequences it was trained on (for the evaluation's unseen-context filter)", () => {
  const seqs = [[1, 2, 3], [], [500, 70000]];
  expect(decodeSeen(encodeSeen(seqs))).toEqual(seqs);
});

describe("loadRouterFor", () => {
  it("uses the learned router whose file matches the SLM, and says so", () => {
    const d = fs.mkdtempSync(path.join(dir, "match-"));
    writeRouterFile(
      path.join(d, "other.router.json"),
      encodeRouterFile({ slm: { ...bindingA, name: "other" }, features: spec, params: initMlp([H + 1, 2 * H, H, 1], 1) }),
    );
    writeRouterFile(
      path.join(d, "mine.router.json"),
      encodeRouterFile({ slm: bindingA, features: spec, params: initMlp([H + 1, 2 * H, H, 1], 1) }),
    );
    const c = loadRouterFor(slmA, { dir: d });
    expect(c.kind).toBe("learned");
    expect(c.router).toBeInstanceOf(LearnedRouter);
    expect(c.description).toMatch(/^router: learned \(MLP 7→12→6→1 on hidden\+top1, mine\.router\.json\)/);
  });

  it("falls back to the confidence router when no file matches (or the folder is missing)", () => {
    const d = fs.mkdtempSync(path.join(dir, "nomatch-"));
    writeRouterFile(
      path.join(d, "other.router.json"),
      encodeRouterFile({ slm: { ...bindingA, hiddenSize: 8 }, features: spec, params: initMlp([9, 16, 8, 1], 1) }),
    );
    fs.writeFileSync(path.join(d, "junk.router.json"), "{not json");
    const c = loadRouterFor(slmA, { dir: d });
    expect(c.kind).toBe("confidence");
    expect(c.router).toBeInstanceOf(ConfidenceRouter);
    expect(c.description).toMatch(/confidence .* no router in .* matches model-a/);
    expect(loadRouterFor(slmA, { dir: path.join(dir, "absent") }).description).toMatch(/no learned or distilled router in/);
  });

  it("an explicitly requested router file for another model is an error, not a silent fallback", () => {
    const file = writeFor({ ...bindingA, name: "model-z" });
    expect(() => loadRouterFor(slmA, { file })).toThrow(RouterMismatchError);
  });
});
