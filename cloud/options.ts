/**
 * Command-line options of `npm run cloud` (cloud/main.ts), parsed without side effects beyond reading
 * a token file, so tests can check every rule without starting a server.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { checkTokenStrength, isLoopbackHost } from "./auth.js";
import { MAX_SEQUENCES } from "./memory.js";
import { DEFAULT_PORT, type CloudServerOptions } from "./server.js";
import { UsageError, errorMessage } from "../shared/errors.js";

export const USAGE = `Usage: npm run cloud -- --model <path|hf:user/repo:quant> [options]

Options:
  --model, -m <src>       GGUF file or hf: URI of the large model (required)
  --host <addr>           address to bind (default 127.0.0.1; 0.0.0.0 for every interface)
  --port, -p <n>          port (default ${DEFAULT_PORT}; 0 picks a free one)
  --token-file <file>     read the access token from a file (first line; keep it chmod 600)
  --token <t>             access token (visible in the process list: prefer --token-file)
                          default: $TANDEM_CLOUD_TOKEN, else a random token, printed at start
  --no-auth               no token (allowed only on a loopback address)
  --gpu <kind>            auto (CUDA, Vulkan or Metal when available, else CPU; default), cuda,
                          vulkan, metal or cpu; layers are offloaded as far as GPU memory allows
  --max-sessions <n>      concurrent sessions, at most ${MAX_SEQUENCES} (default 8, or as many as --max-kv-mb holds)
  --context-size <n>      tokens per session (default: the model's training context, at most 4096)
  --max-kv-mb <n>         KV-cache budget in MiB: sessions × context size must fit (checked at start)
  --max-queue <n>         requests waiting for the model, all sessions (default max(32, 4 × sessions));
                          beyond it: 503 with Retry-After
  --idle-timeout <s>      free sessions idle this many seconds (default 600)
  --rate-limit <n>        requests per second per client (token + IP), bursts of 2n (default 500;
                          0 turns it off; raise it when many devices share one address, e.g. a NAT)
  --slm <src>             GGUF file or hf: URI of the device's small model: the server then replicates
                          the device's routed decoding (/route: one round trip per stretch of routed
                          tokens instead of one per token); devices use it only if it is their own SLM
  --replica-slots <n>     conversations the SLM replica follows at once (default 4)
  --help, -h              this text`;

/** A mistake on the command line: exit code 2 with the usage text. */

export type GpuChoice = NonNullable<CloudServerOptions["gpu"]>;

export interface ParsedCloudArgs {
  help: boolean;
  /** everything startCloudServer needs but the model file itself */
  server: Omit<CloudServerOptions, "model" | "log">;
  /** the model source as given (path or hf: URI) */
  model: string;
  /** how the token was obtained, for the start-up message */
  tokenSource: "flag" | "file" | "env" | "generated" | "none";
  /** things worth telling the operator, e.g. a token file others can read */
  warnings: string[];
}

const GPU_CHOICES: Readonly<Record<string, GpuChoice>> = { auto: "auto", cuda: "cuda", vulkan: "vulkan", metal: "metal", cpu: false };

const CLOUD_FLAGS = {
  model: { type: "string", short: "m" },
  host: { type: "string", default: "127.0.0.1" },
  port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
  token: { type: "string" },
  "token-file": { type: "string" },
  "no-auth": { type: "boolean", default: false },
  gpu: { type: "string", default: "auto" },
  "max-sessions": { type: "string" },
  "context-size": { type: "string" },
  "max-kv-mb": { type: "string" },
  "max-queue": { type: "string" },
  "idle-timeout": { type: "string" },
  "rate-limit": { type: "string" },
  slm: { type: "string" },
  "replica-slots": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

type CloudFlags = ReturnType<typeof readFlags>;

export function parseCloudArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedCloudArgs {
  const values = readFlags(argv);
  const empty: ParsedCloudArgs = { help: true, server: {}, model: "", tokenSource: "none", warnings: [] };
  if (values.help) return empty;
  if (!values.model) throw new UsageError("--model is required");
  checkAuthFlags(values);
  const gpu = GPU_CHOICES[values.gpu];
  if (gpu === undefined) throw new UsageError(`--gpu must be one of ${Object.keys(GPU_CHOICES).join(", ")}, got "${values.gpu}"`);
  const warnings: string[] = [];
  const { token, tokenSource } = values["no-auth"]
    ? { token: undefined, tokenSource: "none" as const }
    : chooseToken(values, env, warnings);
  return { help: false, model: values.model, tokenSource, warnings, server: { ...serverFlags(values), token, gpu } };
}

function readFlags(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: CLOUD_FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

/** The token flags agree with each other and with the address. */
function checkAuthFlags(values: CloudFlags): void {
  const noAuth = values["no-auth"];
  if (values.token !== undefined && values["token-file"] !== undefined) {
    throw new UsageError("--token and --token-file both give a token; choose one");
  }
  if (noAuth && (values.token !== undefined || values["token-file"] !== undefined)) {
    throw new UsageError("--no-auth contradicts --token / --token-file; choose one");
  }
  if (noAuth && !isLoopbackHost(values.host)) {
    throw new UsageError(
      `--no-auth is allowed only on a loopback address (127.0.0.1, ::1), not ${values.host}: anyone who can reach it could use the model`,
    );
  }
}

/** The access token: the flag's, the file's, the environment's, or a new random one; checked before a possibly long download. */
function chooseToken(
  values: CloudFlags,
  env: NodeJS.ProcessEnv,
  warnings: string[],
): { token: string; tokenSource: ParsedCloudArgs["tokenSource"] } {
  let token: string;
  let tokenSource: ParsedCloudArgs["tokenSource"];
  if (values.token !== undefined) [token, tokenSource] = [values.token, "flag"];
  else if (values["token-file"] !== undefined) [token, tokenSource] = [readTokenFile(values["token-file"], warnings), "file"];
  else if (env.TANDEM_CLOUD_TOKEN) [token, tokenSource] = [env.TANDEM_CLOUD_TOKEN, "env"];
  // a server without a token is never the default: make one up and print it
  else [token, tokenSource] = [randomBytes(24).toString("base64url"), "generated"];
  try {
    checkTokenStrength(token);
  } catch (err) {
    throw new UsageError(
      `${errorMessage(err)}${tokenSource === "file" ? ` (in ${values["token-file"]})` : tokenSource === "env" ? " (in TANDEM_CLOUD_TOKEN)" : ""}`,
    );
  }
  return { token, tokenSource };
}

/** The server's numeric limits and addresses from the flags, each range-checked. */
function serverFlags(values: CloudFlags): ParsedCloudArgs["server"] {
  const idleSeconds = optionalInt(values["idle-timeout"], "--idle-timeout", 1, 7 * 24 * 3600);
  const rate = optionalInt(values["rate-limit"], "--rate-limit", 0, 1_000_000);
  return {
    host: values.host,
    port: intArg(values.port, "--port", 0, 65535),
    allowNoAuth: values["no-auth"],
    maxSessions: optionalInt(values["max-sessions"], "--max-sessions", 1, MAX_SEQUENCES),
    contextSize: optionalInt(values["context-size"], "--context-size", 16, 1 << 22),
    maxKvMb: optionalInt(values["max-kv-mb"], "--max-kv-mb", 1, 1 << 30),
    maxQueued: optionalInt(values["max-queue"], "--max-queue", 1, 1 << 20),
    idleTimeoutMs: idleSeconds === undefined ? undefined : idleSeconds * 1000,
    rateLimit: rate === undefined ? undefined : rate === 0 ? false : { perSecond: rate, burst: 2 * rate },
    ...(values.slm ? { replicaModelPath: values.slm } : {}),
    replicaSlots: optionalInt(values["replica-slots"], "--replica-slots", 1, 64),
  };
}

/** The first line of a token file, without surrounding whitespace (files usually end in a newline). */
function readTokenFile(file: string, warnings: string[]): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`Cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
  const token = text.split(/\r?\n/, 1)[0].trim();
  if (!token) throw new UsageError(`The token file ${file} is empty`);
  if (process.platform !== "win32" && (statSync(file).mode & 0o077) !== 0) {
    warnings.push(`the token file ${file} can be read by other users of this machine (chmod 600 ${file})`);
  }
  return token;
}

function intArg(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name} must be an integer from ${min} to ${max}, got "${v}"`);
  }
  return n;
}

function optionalInt(v: string | undefined, name: string, min: number, max: number): number | undefined {
  return v === undefined ? undefined : intArg(v, name, min, max);
}
