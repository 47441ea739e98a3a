/**
 * Real parts for the UI tests: the browser-mode host as a child process (so it can be restarted), a
 * cloud token server as a child process (so it can be killed mid-answer), and Debian's Chromium driven
 * by playwright-core. Nothing is mocked.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const artifactsDir = path.join(repoRoot, "e2e", "artifacts");
export const CHROMIUM = process.env.TANDEM_CHROMIUM ?? "/usr/bin/chromium";

/** Why the UI tests cannot run here, or null. */
export function missingForE2e(): string | null {
  if (!existsSync(CHROMIUM)) return `Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set TANDEM_CHROMIUM)`;
  if (!existsSync(path.join(repoRoot, "dist", "renderer", "index.html"))) return "the renderer is not built (npm run build:renderer)";
  return null;
}

export async function launchChromium(): Promise<Browser> {
  mkdirSync(artifactsDir, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives every launch a fresh temporary profile (it refuses --user-data-dir here)
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-sync",
    ],
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

interface Proc {
  child: ChildProcess;
  output(): string;
}

function spawnTsx(script: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<Proc & { match: RegExpMatchArray }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, script), ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TANDEM_THREADS: "1", ...env },
  });
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start in 90 s:\n${out}`)), 90_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m, output: () => out });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code}):\n${out}`));
    });
  });
}

export async function kill(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((r) => {
    child.once("exit", () => r());
    child.kill(signal);
  });
}

export interface CloudProc {
  url: string;
  token: string;
  child: ChildProcess;
}

export async function startCloud(model: string): Promise<CloudProc> {
  const token = "e2e-token-0123456789abcdef";
  const p = await spawnTsx("cloud/main.ts", ["--model", model, "--port", "0", "--token", token], /https?:\/\/127\.0\.0\.1:\d+/);
  p.child.once("exit", () => {}); // expected: tests kill it
  return { url: p.match[0], token, child: p.child };
}

export interface WebProc {
  url: string;
  child: ChildProcess;
  output(): string;
}

export async function startWeb(opts: {
  dataDir: string;
  slm: string;
  /** a cloud token server (a child process, or one in the test process) */
  cloud?: { url: string; token: string };
  paceMs?: number;
  tau?: number;
  maxTokens?: number;
  /** start with no local model (the first-run catalogue) */
  firstRun?: boolean;
  /** no cloud flag at all: the cloud saved in the data folder's settings is used */
  savedCloud?: boolean;
}): Promise<WebProc> {
  const args = [
    "--port",
    "0",
    "--data",
    opts.dataDir,
    "--slm",
    opts.slm,
    ...(opts.firstRun ? ["--first-run"] : []),
    "--pace-ms",
    String(opts.paceMs ?? 30),
    "--max-tokens",
    String(opts.maxTokens ?? 160),
  ];
  if (opts.tau !== undefined) args.push("--tau", String(opts.tau));
  if (opts.cloud) args.push("--cloud", opts.cloud.url, "--token", opts.cloud.token);
  else if (!opts.savedCloud) args.push("--no-cloud");
  const p = await spawnTsx("web/main.ts", args, /Tandem browser mode: (http:\/\/\S+)/);
  p.child.once("exit", () => {});
  return { url: p.match[1], child: p.child, output: p.output };
}
