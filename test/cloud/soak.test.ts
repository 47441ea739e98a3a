/**
 * The soak run (cloud/soak.ts) in a size that fits CI: 64 concurrent sessions against the real server
 * (`npm run cloud` in a child process, stories260K) for 25 s. `npm run soak` is the long version
 * (5 minutes by default, a tighter memory bound).
 *
 * What it proves: 64 sessions doing create / append / next / rollback / truncate / re-predict / delete
 * and re-create at once get only correct answers (status, lengths, tokens, identical re-predictions),
 * the server stays up and logs nothing, gives every session and token back at the end, and its
 * resident memory does not climb from the first half of the run to the second by more than the bound.
 * A short run only catches gross leaks (the bound over ~11 s between half-medians is ~4 MiB/s); the
 * long run's 24 MiB over 5 minutes catches ~0.2 MiB/s.
 */
import { describe, expect, it } from "vitest";
import { runSoak } from "../../cloud/soak.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";

const DURATION_MS = Number(process.env.TANDEM_SOAK_MS ?? 25_000);

noteMissingShared("the cloud soak test");

describe.skipIf(!hasStories)("cloud server soak (CI size)", () => {
  it(`holds 64 sessions for ${DURATION_MS / 1000} s with no error and stable memory`, { timeout: DURATION_MS + 120_000 }, async () => {
    const f = await ensureFixtures();
    const report = await runSoak({
      model: f.storiesLlm!,
      sessions: 64,
      durationMs: DURATION_MS,
      sampleEveryMs: 1000,
      // the first seconds fill the allocator and the JIT; compare what follows
      warmupFraction: 0.3,
      maxGrowthBytes: 48 * 1024 * 1024,
      seed: 3,
    });
    const m = report.memory;
    console.log(
      `soak: ${report.sessions} sessions, ${(report.durationMs / 1000).toFixed(0)} s, ${report.requests} requests (${report.requestsPerSecond}/s), ` +
        `${report.failureCount} errors, ${report.predictions} predictions, ${report.rollbacks} rollbacks, ${report.recreated} re-created, ` +
        `${report.rePredictions} re-predictions (${report.tieFlips} near-tie flips); next p50 ${report.nextLatencyMs.p50} ms p99 ${report.nextLatencyMs.p99} ms; ` +
        `RSS ${(m.firstHalfRssMedianBytes / 2 ** 20).toFixed(1)} → ${(m.secondHalfRssMedianBytes / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(report.failures, `${report.failureCount} failures`).toEqual([]);
    expect(report.ok).toBe(true);
    // every kind of traffic happened, from every session
    expect(report.requests).toBeGreaterThan(64 * 20);
    for (const kind of ["create", "next", "append", "next-rollback", "next-repredict", "truncate", "delete"])
      expect(report.byKind[kind] ?? 0, kind).toBeGreaterThan(0);
    expect(report.recreated).toBeGreaterThan(0);
    expect(m.samples).toBeGreaterThanOrEqual(10);
    expect(m.peakTokensHeld).toBeGreaterThan(0);
    expect(m.peakKvBytesInUse).toBeLessThanOrEqual(m.kvBytesAllocated);
  });
});
