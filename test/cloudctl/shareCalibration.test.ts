/** The running quantile behind a target cloud share: bounded, exact on its window, persisted and set aside when corrupt. */
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { routesToCloud } from "../../shared/router.js";
import { ScoreWindow, ShareSteer, shareAtTau, tauForShare } from "../../electron/engine/cloudControl/shareCalibration.js";
import { CALIBRATION_FILE, CalibrationStore, MAX_PAIRS, pairKey } from "../../electron/engine/cloudControl/calibrationStore.js";
import { mulberry32 } from "../../shared/prng.js";

describe("score window", () => {
  it("keeps the last `capacity` scores, sorted and in order", () => {
    const w = new ScoreWindow(5);
    for (const s of [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8]) w.add(s);
    expect(w.size).toBe(5);
    expect(w.inOrder()).toEqual([0.5, 0.3, 0.7, 0.2, 0.8]);
    expect(w.sorted).toEqual([0.2, 0.3, 0.5, 0.7, 0.8]);
    w.add(Number.NaN); // not a score: ignored
    expect(w.size).toBe(5);
  });

  it("the τ for a share routes that share of the window (score < τ), and shareAtTau inverts it", () => {
    const rand = mulberry32(7);
    const w = new ScoreWindow(1000);
    for (let i = 0; i < 1000; i++) w.add(rand());
    for (const share of [0, 0.05, 0.1, 0.2, 0.5, 1]) {
      const tau = tauForShare(w.sorted, share)!;
      const routed = w.sorted.filter((s) => routesToCloud(s, tau)).length;
      expect(routed).toBe(Math.round(share * 1000));
      expect(shareAtTau(w.sorted, tau)).toBeCloseTo(share, 3);
    }
    expect(tauForShare([], 0.1)).toBeNull();
    expect(shareAtTau([], 0.5)).toBeNull();
  });

  it("a steer on a calibrated window asks for the target quantile while the answer is on target, more when behind", () => {
    const w = new ScoreWindow(100);
    for (let i = 0; i < 100; i++) w.add(i / 100);
    const steer = new ShareSteer(w, 0.1);
    // position 0: 0.1 of a routed position is due: a little above the 10th percentile
    const t0 = steer.tau();
    expect(shareAtTau(w.sorted, t0)).toBeGreaterThanOrEqual(0.1);
    expect(shareAtTau(w.sorted, t0)).toBeLessThan(0.2);
    // ten positions kept locally: one routed position is owed, so τ rises
    for (let i = 0; i < 10; i++) steer.observe({ confidence: 0.99, tau: steer.tau() });
    expect(steer.tau()).toBeGreaterThan(t0);
    expect(steer.realised).toEqual({ positions: 10, routed: 0, share: 0 });
    expect(() => new ShareSteer(w, 1.5)).toThrow(/target cloud share/);
  });
});

describe("calibration store", () => {
  it("keeps windows across a restart, at most MAX_PAIRS of them, least recently used dropped", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandem-cal-"));
    const a = await CalibrationStore.open(dir);
    const key = (i: number) => pairKey({ slm: `slm${i}`, router: "confidence", cloud: "llm" });
    for (let i = 0; i < MAX_PAIRS + 2; i++) a.window(key(i)).add(i / 100);
    await a.save();
    const b = await CalibrationStore.open(dir);
    expect(b.has(key(0))).toBe(false);
    expect(b.has(key(1))).toBe(false);
    expect(b.window(key(MAX_PAIRS + 1)).inOrder()).toEqual([(MAX_PAIRS + 1) / 100]);
    const file = JSON.parse(await readFile(path.join(dir, CALIBRATION_FILE), "utf8"));
    expect(file.pairs).toHaveLength(MAX_PAIRS);
  });

  it("a corrupt file is set aside with a notice, and calibration starts over", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandem-cal-"));
    await writeFile(path.join(dir, CALIBRATION_FILE), '{"version":1,"pairs":[{"key":"x","scores":[2]}]}');
    const s = await CalibrationStore.open(dir);
    expect(s.notices[0]).toMatch(/set aside/);
    expect(s.has("x")).toBe(false);
    expect((await readdir(dir)).some((f) => f.startsWith(`${CALIBRATION_FILE}.corrupt-`))).toBe(true);
  });
});
