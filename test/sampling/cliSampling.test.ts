/**
 * The terminal chat's sampling flags: the preset and the fields over it, checked by the settings'
 * schema with errors that name the flag; and `npm run demo -- --json` as a user runs it: reproducible
 * by default (Balanced, seed 1), every token line and the summary carrying the settings, a given seed
 * giving another answer.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { DEMO_SEED, samplingFromFlags } from "../../cli/samplingFlags.js";
import { UsageError } from "../../shared/errors.js";
import { SAMPLING_PRESETS } from "../../shared/sampling.js";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";

const run = promisify(execFile);

describe("sampling flags", () => {
  it("default to Balanced with a new seed per answer (the demo: seed 1); the fields override the preset", () => {
    expect(samplingFromFlags({}, false)).toEqual({ ...SAMPLING_PRESETS.balanced, preset: "balanced", seed: null });
    expect(samplingFromFlags({}, true)).toEqual({ ...SAMPLING_PRESETS.balanced, preset: "balanced", seed: DEMO_SEED });
    expect(samplingFromFlags({ preset: "precise" }, false).temperature).toBe(0);
    const custom = samplingFromFlags(
      { preset: "creative", temperature: "0.5", "top-k": "7", "top-p": "0.5", "min-p": "0.1", "repeat-penalty": "1.2", seed: "42" },
      false,
    );
    expect(custom).toMatchObject({ preset: "custom", temperature: 0.5, topK: 7, topP: 0.5, minP: 0.1, repeatPenalty: 1.2, seed: 42 });
    // the preset's own values given again keep its name
    expect(samplingFromFlags({ temperature: "0.7" }, false).preset).toBe("balanced");
  });

  it.each([
    [{ preset: "wild" }, /--preset: expected one of precise, balanced, creative/],
    [{ temperature: "hot" }, /--temperature: expected a number, got "hot"/],
    [{ temperature: "9" }, /--temperature: .*\(got "9"\)/],
    [{ "top-p": "0" }, /--top-p: /],
    [{ "top-k": "2.5" }, /--top-k: /],
    [{ "min-p": "-1" }, /--min-p: /],
    [{ "repeat-penalty": "0.5" }, /--repeat-penalty: /],
    [{ seed: "1.5" }, /--seed: /],
    [{ seed: "" }, /--seed: expected a number/],
  ])("%o is a usage error naming the flag", (flags, message) => {
    expect(() => samplingFromFlags(flags, false)).toThrow(UsageError);
    expect(() => samplingFromFlags(flags, false)).toThrow(message);
  });
});

async function demo(args: string[]) {
  const { stdout } = await run(process.execPath, ["--import", "tsx", path.join(repoRoot, "cli", "chat.ts"), "--demo", "--json", ...args], {
    cwd: repoRoot,
    timeout: 120_000,
  });
  const lines = stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const summary = (lines.pop() as { summary: { sampling: unknown; text: string } }).summary;
  return { lines, summary, view: lines.map((l) => `${l.tokenId as number}:${l.origin as string}`) };
}

describe("npm run demo -- --json, sampled", () => {
  if (!hasStories) noteMissingShared("the demo's sampling (stories260K pair)");

  it.skipIf(!hasStories)(
    "is the same answer every run by default (Balanced, seed 1); the lines and summary carry the settings; another seed, another answer",
    async () => {
      const a = await demo(["--tau", "0.5", "--max-tokens", "24"]);
      const b = await demo(["--tau", "0.5", "--max-tokens", "24"]);
      expect(b.view).toEqual(a.view);
      const settings = { ...SAMPLING_PRESETS.balanced, seed: DEMO_SEED };
      expect(a.summary.sampling).toEqual(settings);
      expect(a.lines.every((l) => JSON.stringify(l.sampling) === JSON.stringify(settings))).toBe(true);
      const c = await demo(["--tau", "0.5", "--max-tokens", "24", "--seed", "2"]);
      expect(c.view).not.toEqual(a.view);
      expect((c.summary.sampling as { seed: number }).seed).toBe(2);
    },
    360_000,
  );
});
