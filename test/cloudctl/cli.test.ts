/** The terminal chat's cloud controls as a user runs them: --target-share and --local-only on the demo pair. */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";

const run = promisify(execFile);

async function demo(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", path.join(repoRoot, "cli", "chat.ts"), "--demo", ...args], {
      cwd: repoRoot,
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const summaryOf = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!).summary;

describe.skipIf(!hasStories)("terminal chat: target share and local-only", () => {
  noteMissingShared("the demo's cloud controls");

  it("--target-share 0.1 over 200 tokens: the cloud writes 8–12% of the answer, and the summary says target and share", async () => {
    const { code, stdout, stderr } = await demo(["--json", "--target-share", "0.1", "--max-tokens", "200", "Once upon a time"]);
    expect(code, stderr).toBe(0);
    const s = summaryOf(stdout);
    expect(s.tokens).toBe(200);
    expect(s.targetShare).toBe(0.1);
    expect(s.cloudShare).toBeCloseTo(s.cloudTokens / s.tokens, 10);
    expect(s.cloudShare).toBeGreaterThanOrEqual(0.08);
    expect(s.cloudShare).toBeLessThanOrEqual(0.12);
  });

  it("--local-only: no cloud token, call or byte, and routed positions say why they stayed local", async () => {
    const { code, stdout, stderr } = await demo(["--json", "--local-only", "--tau", "0.9", "--max-tokens", "40", "Once upon a time"]);
    expect(code, stderr).toBe(0);
    const lines = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const s = lines.at(-1).summary;
    expect([s.cloudTokens, s.cloudCalls, s.bytesUp, s.bytesDown]).toEqual([0, 0, 0, 0]);
    const fallbacks = lines.filter((l) => l.origin === "fallback");
    expect(fallbacks.length).toBeGreaterThan(0); // τ = 0.9 routes some positions: they stay local, saying so
    expect(fallbacks.every((e) => e.fallbackReason.startsWith("local-only:"))).toBe(true);
  });

  it("--tau with --target-share is a usage error", async () => {
    const { code, stderr } = await demo(["--tau", "0.3", "--target-share", "0.1", "hi"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/give one, not both/);
  });
});
