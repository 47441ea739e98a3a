/** The terminal chat as a user runs it: `npm run demo -- --json`, and its clear errors. */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { closedPort, INVALID_CLOUD_SETTINGS, startSilentServer } from "../app/hostileNet.js";
import { hostileModels } from "../app/hostileModels.js";
import { randomQwenPair, storiesPair } from "../helpers/pair.js";
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

  it.skipIf(!hasStories)("demo --json: one JSON object per token, then the summary; both origins at τ = 0.5", async () => {
    const { code, stdout, stderr } = await chat(["--demo", "--json", "--tau", "0.5", "--max-tokens", "40", "Once upon"]);
    expect(code, stderr).toBe(0);
    const lines = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
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

  it.skipIf(!hasStories)("coloured output with a summary line", async () => {
    const { code, stdout, stderr } = await chat(["--demo", "--tau", "0.5", "--max-tokens", "30"]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("\x1b[1;35m"); // cloud colour
    expect(stdout).toContain("\x1b[32m"); // local colour
    expect(stderr).toMatch(/30 tokens · \d+ cloud/);
  });

  it.skipIf(!hasStories)("a vocabulary mismatch is a clear error before any token", async () => {
    const { code, stdout, stderr } = await chat(["--slm", f.randGpt2, "--llm", f.storiesLlm!, "--json", "hello"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/Vocabulary mismatch/);
    expect(stderr).toContain("rand-gpt2");
  });

  it("bad options are usage errors", async () => {
    for (const args of [["--tau", "2", "x"], ["--no-such-option", "x"], ["--tau"]]) {
      const { code, stderr } = await chat(args);
      expect(code, args.join(" ")).toBe(2);
      expect(stderr).toMatch(/^error: .*\nusage:/);
    }
  });
});

/** A clear error: exit code 1, one "error:" line saying what is wrong, no stack trace, no answer. */
function expectCleanError(r: { code: number; stdout: string; stderr: string }, message: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(/^error: /m);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at |TANDEM_DEBUG/); // a message, not a stack trace or an unexpected error
  expect(r.stdout).toBe("");
}

/** Runs many CLI invocations two at a time (2 cores): each is a process start of ~1 s. */
async function inPairs<T, R>(items: readonly T[], f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]);
    }
  };
  await Promise.all([lane(), lane()]);
  return out;
}

describe("terminal chat: hostile files and settings", () => {
  const TOKEN = "cli-hostile-token-0123456789abcdef";
  let server: CloudServer;
  let slm: string;
  beforeAll(async () => {
    const pair = (await storiesPair()) ?? (await randomQwenPair());
    slm = pair.slm;
    server = await startCloudServer({ modelPath: pair.llm, host: "127.0.0.1", port: 0, token: TOKEN, log: () => {} });
  });
  afterAll(async () => server?.close());

  // many processes in two lanes: the whole run may take minutes on a loaded machine; each process is
  // still bound (never a hang: 30 s each below, and the 120 s kill in `chat`)
  const MANY_PROCESSES = { timeout: 300_000 };

  it("every bad model file as --slm: exit 1 with a clear message, before any token, never a hang", MANY_PROCESSES, async () => {
    const models = await hostileModels();
    const results = await inPairs(models, async (m) => {
      const t0 = performance.now();
      const r = await chat(["--slm", m.file, "hello"]);
      return { m, r, ms: performance.now() - t0 };
    });
    for (const { m, r, ms } of results) {
      expectCleanError(r, m.error);
      expect(ms, m.what).toBeLessThan(30_000);
    }
    console.log(`hostile inputs (CLI): ${models.length} bad model files rejected with exit code 1 and a message`);
  });

  it("a model too large for memory as the in-process cloud's --llm: the same clear error", async () => {
    const [huge] = await hostileModels();
    expectCleanError(await chat(["--slm", slm, "--llm", huge.file, "hello"]), huge.error);
  });

  it(
    "every invalid cloud setting: exit 1 with a clear message before a model is loaded; the token never echoed",
    MANY_PROCESSES,
    async () => {
      const results = await inPairs(INVALID_CLOUD_SETTINGS, (c) =>
        chat(["--cloud", c.url, ...(c.token ? ["--token", c.token] : []), "hello"]),
      );
      results.forEach((r, i) => {
        const c = INVALID_CLOUD_SETTINGS[i];
        expectCleanError(r, c.error);
        if (c.token) expect(r.stderr).not.toContain(c.token);
      });
      console.log(`hostile inputs (CLI): ${INVALID_CLOUD_SETTINGS.length} invalid cloud settings rejected with exit code 1 and a message`);
    },
  );

  it("a wrong token or none: the server's 401 is a clear error, exit 1, before any token", async () => {
    expectCleanError(
      await chat(["--slm", slm, "--cloud", server.url, "--token", "wrong-token-0123456789abcdef", "--json", "hello"]),
      new RegExp(`The cloud at ${server.url} refused the access token \\(HTTP 401\\)`),
    );
    expectCleanError(await chat(["--slm", slm, "--cloud", server.url, "--json", "hello"]), /needs an access token \(HTTP 401\)/);
  });

  it("an unreachable cloud is not a settings error: the answer goes on locally and stderr says why (exit 0)", async () => {
    const r = await chat([
      "--slm",
      slm,
      "--cloud",
      `http://127.0.0.1:${await closedPort()}`,
      "--token",
      TOKEN,
      "--tau",
      "1",
      "--max-tokens",
      "5",
      "--json",
      "hello",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cloud: offline \(cloud unreachable: ECONNREFUSED\); answering locally/);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.pop().summary.fallbackTokens).toBe(5); // τ = 1 wanted the cloud for every token
  });

  it("a cloud that accepts the connection and never answers: the connect deadline ends the wait, the answer goes on locally", async () => {
    const silent = await startSilentServer();
    try {
      const t0 = performance.now();
      const r = await chat([
        "--slm",
        slm,
        "--cloud",
        silent.url,
        "--token",
        TOKEN,
        "--tau",
        "1",
        "--max-tokens",
        "3",
        "--deadline-ms",
        "300",
        "hello",
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/cloud: offline \(no answer from the cloud/);
      expect(r.stderr).toMatch(/3 tokens · 0 cloud \(0\.0%\) · 3 fallback/);
      expect(performance.now() - t0).toBeLessThan(30_000);
    } finally {
      await silent.close();
    }
  });
});
