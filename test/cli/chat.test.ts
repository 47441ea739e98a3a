/** The terminal chat as a user runs it: `npm run demo -- --json`, and its clear errors. */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";

const run = promisify(execFile);

async function chat(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", path.join(repoRoot, "cli", "chat.ts"), ...args], {
      cwd: repoRoot,
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("terminal chat", () => {
  let f: Awaited<ReturnType<typeof ensureFixtures>>;
  beforeAll(async () => {
    f = await ensureFixtures();
    if (!hasStories) noteMissingShared("the demo (stories260K pair)");
  });

  it("demo --json: one JSON object per token, then the summary; both origins at τ = 0.5", async () => {
    if (!hasStories) return;
    const { code, stdout, stderr } = await chat(["--demo", "--json", "--tau", "0.5", "--max-tokens", "40", "Once upon"]);
    expect(code, stderr).toBe(0);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
    const summary = lines.pop().summary;
    expect(lines.length).toBe(40);
    expect(new Set(lines.map((e) => e.origin))).toEqual(new Set(["local", "cloud"]));
    expect(summary.tokens).toBe(lines.length);
    expect(summary.cloudTokens).toBe(lines.filter((e) => e.origin === "cloud").length);
    expect(summary.fallbackTokens).toBe(0);
    expect(summary.cloudCalls).toBe(summary.cloudTokens);
    expect(summary.bytesUp).toBeGreaterThan(0);
    expect(summary.bytesDown).toBeGreaterThan(0);
    expect(summary.tokensPerSecond).toBeGreaterThan(0);
    expect(summary.text).toBe(lines.map((e) => e.text).join(""));
    for (const k of ["index", "tokenId", "text", "origin", "confidence", "tau", "cloudLatencyMs"]) expect(lines[0]).toHaveProperty(k);
  });

  it("coloured output with a summary line", async () => {
    if (!hasStories) return;
    const { code, stdout, stderr } = await chat(["--demo", "--tau", "0.5", "--max-tokens", "30"]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("\x1b[1;35m"); // cloud colour
    expect(stdout).toContain("\x1b[32m"); // local colour
    expect(stderr).toMatch(/30 tokens · \d+ cloud/);
  });

  it("a vocabulary mismatch is a clear error before any token", async () => {
    if (!hasStories) return;
    const { code, stdout, stderr } = await chat(["--slm", f.randGpt2, "--llm", f.storiesLlm!, "--json", "hello"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/Vocabulary mismatch/);
    expect(stderr).toContain("rand-gpt2");
  });

  it.each([
    ["corrupt", () => f.corrupt, /Cannot load/],
    ["non-GGUF", () => f.notModel, /not a GGUF model file/],
  ])("a %s model file is a clear error", async (_n, file, pattern) => {
    const { code, stderr } = await chat(["--slm", file(), "hello"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(pattern);
    expect(stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it("bad options are usage errors", async () => {
    const { code, stderr } = await chat(["--tau", "2", "x"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--tau/);
  });
});
