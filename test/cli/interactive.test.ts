/**
 * The terminal chat's interactive mode as a user runs it: messages piped into
 * `npm run demo -- --interactive --json`, one per line, on the real demo pair and its in-process cloud.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";

if (!hasStories) noteMissingShared("the interactive demo (stories260K pair)");

function chat(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "cli", "chat.ts"), ...args], { cwd: repoRoot });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const WORDS = "the little girl saw a big red ball in the park and she was happy dog ran home sun tree bird sang".split(" ");
const line = (i: number, n: number) =>
  Array.from({ length: n }, (_, k) => WORDS[(i * 11 + k * 7 + (k >> 2)) % WORDS.length]).join(" ") + ".";

describe.skipIf(!hasStories)("terminal chat, interactive", () => {
  it("30 long lines from a pipe, several times the 2,048-token window: 30 summaries, no error", async () => {
    const input = Array.from({ length: 30 }, (_, i) => line(i, 250)).join("\n") + "\n";
    const { code, stdout, stderr } = await chat(["--demo", "--interactive", "--json", "--max-tokens", "32"], input);
    expect(code, stderr).toBe(0);
    expect(stderr).not.toMatch(/error/i);
    const lines = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const summaries = lines.filter((l) => "summary" in l).map((l) => l.summary);
    expect(summaries).toHaveLength(30);
    expect(lines.filter((l) => !("summary" in l)).length).toBe(summaries.reduce((n, s) => n + s.tokens, 0));
    for (const s of summaries) {
      expect(s.tokens).toBeGreaterThan(0);
      expect(s.context.window).toBe(2048);
      expect(s.context.used + s.context.reserved).toBeLessThanOrEqual(2048);
    }
    // the conversation passed the window several times; the window slid, in chunks, and kept the newest turn
    const slides = summaries.filter((s) => s.context.slid).length;
    expect(slides).toBeGreaterThanOrEqual(3);
    expect(slides).toBeLessThan(15);
    expect(summaries.at(-1).context.droppedMessages).toBeGreaterThan(20);
  }, 600_000);

  it("commands: /tau, /reset, /system, an unknown one; --system and --context", async () => {
    const input =
      [
        "Once upon a time",
        "/tau 0",
        "The dog ran",
        "/tau 7",
        "/reset",
        "/system A tale.",
        "Lily saw",
        "/bogus",
        "/exit",
        "never read",
      ].join("\n") + "\n";
    const { code, stdout, stderr } = await chat(
      ["--demo", "--interactive", "--json", "--max-tokens", "12", "--tau", "1", "--context", "512", "--system", "Stories. "],
      input,
    );
    expect(code, stderr).toBe(0);
    const summaries = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((l) => "summary" in l)
      .map((l) => l.summary);
    expect(summaries).toHaveLength(3); // nothing after /exit
    expect(summaries[0].cloudTokens).toBe(summaries[0].tokens); // τ = 1: every token from the cloud
    expect(summaries[1].cloudTokens).toBe(0); // τ = 0
    expect(summaries[1].context.used).toBeGreaterThan(summaries[0].context.used);
    expect(summaries[2].context.used).toBeLessThan(summaries[1].context.used); // /reset
    expect(summaries.every((s) => s.context.window === 512)).toBe(true);
    expect(stderr).toMatch(/\/tau takes a number from 0 to 1/);
    expect(stderr).toMatch(/unknown command "\/bogus"/);
  }, 300_000);
});
