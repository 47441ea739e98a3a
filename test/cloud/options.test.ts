/**
 * `npm run cloud` on a GPU box: the command-line rules (cloud/options.ts) and what the real process
 * prints and refuses (cloud/main.ts as a child process).
 */
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startChildServer } from "../../cloud/child.js";
import { parseCloudArgs } from "../../cloud/options.js";
import { UsageError } from "../../shared/errors.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { getTandemLlama } from "../../inference/llama.js";
import { loadModelFile, modelIdentity } from "../../inference/modelFile.js";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";

const dir = mkdtempSync(path.join(tmpdir(), "tandem-cloud-options-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tokenFile(name: string, content: string, mode = 0o600): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  chmodSync(file, mode);
  return file;
}

const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => parseCloudArgs(["--model", "m.gguf", ...args], env);

describe("cloud command-line options", () => {
  it("reads the token from a file: first line, trimmed, and warns when others can read it", () => {
    const ok = parse(["--token-file", tokenFile("t1", "  abcdefghijklmnopqrstuvwxyz012345\nsecond line\n")]);
    expect(ok.server.token).toBe("abcdefghijklmnopqrstuvwxyz012345");
    expect(ok.tokenSource).toBe("file");
    expect(ok.warnings).toEqual([]);
    const open = parse(["--token-file", tokenFile("t2", "abcdefghijklmnopqrstuvwxyz012345\n", 0o644)]);
    expect(open.warnings.join()).toMatch(/other users.*chmod 600/);
  });

  it("refuses a missing, empty or weak token file with a message naming the file", () => {
    expect(() => parse(["--token-file", path.join(dir, "nope")])).toThrow(/Cannot read the token file .*nope: ENOENT/);
    expect(() => parse(["--token-file", tokenFile("empty", "\n")])).toThrow(/is empty/);
    expect(() => parse(["--token-file", tokenFile("short", "short\n")])).toThrow(/16 characters.*short/);
    expect(() => parse(["--token-file", tokenFile("space", "has a space in it, long enough\n")])).toThrow(/printable ASCII/);
  });

  it("never runs without a token off loopback, and never silently", () => {
    expect(() => parse(["--host", "0.0.0.0", "--no-auth"])).toThrow(UsageError);
    expect(() => parse(["--host", "::", "--no-auth"])).toThrow(/loopback/);
    // no token given on a public address: one is generated (and printed), never none
    const generated = parse(["--host", "0.0.0.0"]);
    expect(generated.tokenSource).toBe("generated");
    expect(generated.server.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(generated.server.allowNoAuth).toBe(false);
    // loopback may run open when asked
    expect(parse(["--no-auth"]).server.token).toBeUndefined();
    expect(parse(["--no-auth", "--host", "::1"]).server.allowNoAuth).toBe(true);
  });

  it("takes exactly one token source", () => {
    const file = tokenFile("t3", "abcdefghijklmnopqrstuvwxyz012345");
    expect(() => parse(["--token", "abcdefghijklmnopqrstuvwxyz012345", "--token-file", file])).toThrow(/choose one/);
    expect(() => parse(["--no-auth", "--token-file", file])).toThrow(/contradicts/);
    expect(parse([], { TANDEM_CLOUD_TOKEN: "from-the-environment-0123" })).toMatchObject({
      tokenSource: "env",
      server: { token: "from-the-environment-0123" },
    });
    expect(() => parse([], { TANDEM_CLOUD_TOKEN: "short" })).toThrow(/TANDEM_CLOUD_TOKEN/);
    // the flag wins over the environment
    expect(parse(["--token", "flag-token-0123456789"], { TANDEM_CLOUD_TOKEN: "from-the-environment-0123" }).server.token).toBe(
      "flag-token-0123456789",
    );
  });

  it("chooses the GPU backend: auto by default, cpu means none, anything else is refused", () => {
    expect(parse([]).server.gpu).toBe("auto");
    expect(parse(["--gpu", "cuda"]).server.gpu).toBe("cuda");
    expect(parse(["--gpu", "vulkan"]).server.gpu).toBe("vulkan");
    expect(parse(["--gpu", "metal"]).server.gpu).toBe("metal");
    expect(parse(["--gpu", "cpu"]).server.gpu).toBe(false);
    expect(() => parse(["--gpu", "rocm"])).toThrow(/--gpu must be one of auto, cuda, vulkan, metal, cpu/);
  });

  it("parses the limits, within their ranges", () => {
    const o = parse([
      "--max-sessions",
      "64",
      "--context-size",
      "4096",
      "--max-kv-mb",
      "16384",
      "--max-queue",
      "300",
      "--idle-timeout",
      "60",
      "--rate-limit",
      "2000",
    ]);
    expect(o.server).toMatchObject({
      maxSessions: 64,
      contextSize: 4096,
      maxKvMb: 16384,
      maxQueued: 300,
      idleTimeoutMs: 60_000,
      rateLimit: { perSecond: 2000, burst: 4000 },
    });
    expect(parse(["--rate-limit", "0"]).server.rateLimit).toBe(false);
    expect(parse([]).server.rateLimit).toBeUndefined(); // the server's default
    // llama.cpp allows at most 256 sequences per context
    expect(() => parse(["--max-sessions", "257"])).toThrow(/--max-sessions must be an integer from 1 to 256/);
    expect(() => parse(["--max-kv-mb", "0"])).toThrow(/--max-kv-mb/);
    expect(() => parse(["--max-kv-mb", "1.5"])).toThrow(/--max-kv-mb/);
    expect(() => parse(["--port", "65536"])).toThrow(/--port/);
    expect(() => parse(["--max-queue", "-1"])).toThrow(/--max-queue/);
  });

  it("refuses unknown flags, positionals and a missing model", () => {
    expect(() => parseCloudArgs(["--modle", "x"])).toThrow(UsageError);
    expect(() => parseCloudArgs(["--model", "x", "extra"])).toThrow(UsageError);
    expect(() => parseCloudArgs([])).toThrow(/--model is required/);
    expect(parseCloudArgs(["--help"]).help).toBe(true);
  });
});

/** Runs `npm run cloud` with `args` until it exits. */
function runCloud(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "cloud", "main.ts"), ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TANDEM_THREADS: "1", TANDEM_CLOUD_TOKEN: "" },
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

noteMissingShared("the cloud start-up tests");

describe.skipIf(!hasStories)("npm run cloud, the process", () => {
  it("refuses --no-auth on every interface with exit code 2, before loading anything", async () => {
    const r = await runCloud(["--model", "does-not-exist.gguf", "--host", "0.0.0.0", "--no-auth"]);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/--no-auth is allowed only on a loopback address/);
    expect(r.out).not.toMatch(/Loading/);
  });

  it("fails with a clear message when the asked-for GPU backend cannot load", async () => {
    const f = await ensureFixtures();
    const llama = await getTandemLlama();
    // on a machine with CUDA this would start, which is not what this test is about
    if (llama.gpu === "cuda") return;
    const r = await runCloud(["--model", f.storiesLlm!, "--port", "0", "--gpu", "cuda", "--token", "gpu-test-token-0123456789"]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/Cannot start llama.cpp with --gpu cuda: .*GPU driver installed\? --gpu auto falls back to the CPU/);
  });

  it("prints the model, the full vocabulary hash, the backend and the KV memory, and never the token from a file", async () => {
    const f = await ensureFixtures();
    const llama = await getTandemLlama();
    const { model } = await loadModelFile(llama, f.storiesLlm!);
    const identity = modelIdentity(model);
    await model.dispose();
    const secret = "file-token-abcdefghijklmnop";
    const server = await startChildServer([
      "--model",
      f.storiesLlm!,
      "--port",
      "0",
      "--token-file",
      tokenFile("banner", `${secret}\n`),
      "--max-kv-mb",
      "4",
      "--context-size",
      "256",
    ]);
    try {
      await new Promise((r) => setTimeout(r, 200)); // the banner's last lines follow the URL
      const out = server.output();
      expect(out).toContain(`model:    ${identity.name}`);
      expect(out).toContain(`sha256 ${identity.vocabHash}`); // all 64 hex digits: the device side compares the whole hash
      expect(out).toMatch(/backend: {2}(CPU|\w+, \d+ of \d+ layers on the GPU)/);
      // 4 MiB / (256 cells × 640 B) = 25.6: 25 sessions fit, taking 25 × 160 KiB = 3.9 MiB
      expect(out).toMatch(/sessions: 25 × 255 tokens; KV cache 3\.9 MiB \(640 B per token, budget 4\.0 MiB\)/);
      expect(out).toContain("token:    from --token-file");
      expect(out).not.toContain(secret);
      const health = (await (await fetch(`${server.url}/health`, { headers: { authorization: `Bearer ${secret}` } })).json()) as {
        detail?: unknown;
      };
      expect(health.detail).toBeDefined(); // the token from the file is the one it checks
    } finally {
      await server.stop();
    }
  });
});
