/**
 * Numeric flags of every command are checked in one place (cli/numberFlags.ts): out of range, not a
 * number, or past what a timer can hold is one usage error, exit code 2, no stack trace, before any
 * model is loaded — the terminal chat and browser mode alike.
 */
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/shared.js";

const run = promisify(execFile);

async function command(script: string, args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", path.join(repoRoot, script), ...args], {
      cwd: repoRoot,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("numeric flags", () => {
  it.each([
    // a deadline past 2^31 − 1 ms was a 1 ms timer to Node: every cloud call failed at once
    [["--deadline-ms", "3000000000"], /--deadline-ms: expected a number from 1 to 600000/],
    [["--max-tokens", "1e12"], /--max-tokens: expected a whole number from 1 to 1048576/],
    [["--target-share", "2"], /--target-share: expected a number from 0 to 1, got "2"/],
    [["--context", "abc"], /--context: expected a whole number from 64 to 1048576, got "abc"/],
    [["--candidates", "2.5"], /--candidates: expected a whole number/],
  ])("chat %j: one usage error, exit 2", async (args, message) => {
    const { code, stdout, stderr } = await command("cli/chat.ts", [...args, "hello"]);
    expect(code, stderr).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toMatch(message);
    expect(stderr).toMatch(/^error: .*\nusage:/);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it.each([
    [["--max-tokens", "abc"], /--max-tokens: expected a whole number from 1 to 1048576, got "abc"/],
    [["--pace-ms=-1"], /--pace-ms: expected a whole number from 0 to 10000/],
    [["--port", "99999"], /--port: expected a whole number from 0 to 65535/],
    [["--tau", "7"], /--tau: expected a number from 0 to 1, got "7"/],
    [["--no-such-flag"], /Unknown option '--no-such-flag'/],
  ])("web %j: one usage error, exit 2, before any model loads", async (args, message) => {
    const data = mkdtempSync(path.join(tmpdir(), "tandem-webflags-"));
    const { code, stdout, stderr } = await command("web/main.ts", ["--data", data, ...args]);
    expect(code, stderr).toBe(2);
    expect(stdout).toBe(""); // nothing started: no cloud, no URL
    expect(stderr).toMatch(message);
    expect(stderr).toMatch(/^error: .*\nusage:/);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
