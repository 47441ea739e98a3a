/**
 * The cloud token server as a child process (`cloud/main.ts`), for the soak run and the fuzz test: its
 * memory is then its own (not mixed with the load generator's), its crash is visible as an exit, and
 * everything it logs is kept.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface ChildServer {
  url: string;
  pid: number;
  /** stdout and stderr so far */
  output(): string;
  /** null while running; the exit code (or signal name) once it has exited */
  exited(): number | string | null;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `npm run cloud` with `args` (e.g. --model F --port 0 ...), passing the token through the
 * environment (TANDEM_CLOUD_TOKEN, not argv: argv is visible to every user in the process list).
 * Resolves once it prints its URL; rejects with its output if it exits or is silent for `timeoutMs`.
 */
export async function startChildServer(
  args: readonly string[],
  opts: { token?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ChildServer> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "cloud", "main.ts"), ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    // threads: the server picks them by model size (one for tiny models, inference/llama.ts)
    env: { ...process.env, ...opts.env, ...(opts.token ? { TANDEM_CLOUD_TOKEN: opts.token } : {}) },
  });
  let out = "";
  let exit: number | string | null = null;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = code ?? signal ?? "unknown";
      resolve();
    });
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the cloud server did not start within ${opts.timeoutMs ?? 120_000} ms:\n${out}`));
    }, opts.timeoutMs ?? 120_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the cloud server exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
  // keep collecting after start (errors it logs later are part of the verdict)
  return {
    url,
    pid: child.pid!,
    output: () => out,
    exited: () => exit,
    stop: async (graceMs = 5000) => {
      if (exit !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
}
