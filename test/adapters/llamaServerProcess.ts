/**
 * A real llama.cpp server (`llama-server`, built by `npm run llama-server:build`) on loopback, for the
 * tests that talk to the engine itself rather than to a fake of its documented shape.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../helpers/shared.js";
import { errorMessage } from "../../shared/errors.js";

/** Where the build script puts the binary (TANDEM_LLAMA_SERVER overrides, e.g. a system install). */
export const llamaServerBin =
  process.env.TANDEM_LLAMA_SERVER ??
  path.join(
    process.env.TANDEM_ENGINES_DIR ? path.resolve(process.env.TANDEM_ENGINES_DIR) : path.join(repoRoot, "models", ".scratch", "engines"),
    "llama.cpp",
    "bin",
    "llama-server",
  );
export const hasLlamaServer = existsSync(llamaServerBin);
/** CI sets this after building the server, so that a missing binary fails instead of skipping. */
export const llamaServerRequired = process.env.TANDEM_REQUIRE_LLAMA_SERVER === "1";

/** Call at the top of a describe that needs the binary: logs why it will be skipped. */
export function noteMissingLlamaServer(what: string): void {
  if (!hasLlamaServer)
    console.warn(
      `[skip] ${what}: ${llamaServerBin} not found; run \`npm run llama-server:build\` (once per machine; about 6 minutes on 2 idle cores)`,
    );
}

export interface LlamaServer {
  url: string;
  /** everything the server printed, for failure messages */
  log(): string;
  close(): Promise<void>;
}

export interface LlamaServerOptions {
  /** slots (`--parallel`); default 1 */
  parallel?: number;
  /** context size in tokens (all slots); default 2048 */
  contextSize?: number;
  /** require this API key */
  apiKey?: string;
  /** how long to wait for the model to load, ms (default 60 s) */
  startTimeoutMs?: number;
}

/** Starts llama-server with `model` on 127.0.0.1 and a free port; resolves once /health says ok. */
export async function startLlamaServer(model: string, opts: LlamaServerOptions = {}): Promise<LlamaServer> {
  const args = [
    "-m",
    model,
    "--host",
    "127.0.0.1",
    "--port",
    "0", // the server binds a free port and logs it
    // tiny models must run on one thread on these 2-core machines (docs/FACTS.md)
    "-t",
    "1",
    "-tb",
    "1",
    "-c",
    String(opts.contextSize ?? 2048),
    "-np",
    String(opts.parallel ?? 1),
    "--no-webui",
    "--no-warmup",
  ];
  if (opts.apiKey) args.push("--api-key", opts.apiKey);
  const child: ChildProcess = spawn(llamaServerBin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const onData = (b: Buffer) => {
    output += b.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
  };

  try {
    const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
    let url: string | undefined;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`llama-server exited with code ${child.exitCode}`);
      url ??= /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
      if (url) {
        // the HTTP server comes up before the model is loaded and answers 503 until then
        const ok = await fetch(`${url}/health`).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) return { url, log: () => output, close };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("llama-server did not become healthy in time");
  } catch (err) {
    await close();
    throw new Error(`${errorMessage(err)}\n--- llama-server output ---\n${output.slice(-4000)}`, { cause: err });
  }
}
