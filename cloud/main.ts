/**
 * `npm run cloud -- --model <path|hf:uri> [--port 8788] [--host 127.0.0.1] [--token T] [--no-auth]
 *                   [--max-sessions N] [--context-size N] [--idle-timeout SECONDS]`
 *
 * Starts the cloud token server. Without --token (or TANDEM_CLOUD_TOKEN) and without --no-auth it
 * generates a random token and prints it.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { resolveModelSource } from "../shared/node/modelFile.js";
import { checkTokenStrength, isLoopbackHost } from "./auth.js";
import { DEFAULT_PORT, startCloudServer, type CloudServer } from "./server.js";

const USAGE = `Usage: npm run cloud -- --model <path|hf:user/repo:quant> [options]

Options:
  --model, -m <src>       GGUF file or hf: URI of the large model (required)
  --host <addr>           address to bind (default 127.0.0.1; 0.0.0.0 for every interface)
  --port, -p <n>          port (default ${DEFAULT_PORT}; 0 picks a free one)
  --token <t>             access token clients must send (default: $TANDEM_CLOUD_TOKEN, else a random one)
  --no-auth               no token (allowed only on a loopback address)
  --max-sessions <n>      concurrent sessions (default 8)
  --context-size <n>      tokens per session (default: the model's training context, at most 4096)
  --idle-timeout <s>      free sessions idle this many seconds (default 600)
  --help, -h              this text`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        model: { type: "string", short: "m" },
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
        token: { type: "string" },
        "no-auth": { type: "boolean", default: false },
        "max-sessions": { type: "string" },
        "context-size": { type: "string" },
        "idle-timeout": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.model) {
    console.error(`--model is required\n\n${USAGE}`);
    return 2;
  }

  const noAuth = values["no-auth"];
  if (noAuth && values.token) {
    console.error("--token and --no-auth contradict each other; choose one");
    return 2;
  }
  const host = values.host;
  let token = noAuth ? undefined : (values.token ?? process.env.TANDEM_CLOUD_TOKEN);
  const generated = !noAuth && !token;
  if (generated) token = randomBytes(24).toString("base64url");

  let server: CloudServer;
  try {
    const port = intArg(values.port, "--port", 0, 65535);
    const maxSessions = optionalInt(values["max-sessions"], "--max-sessions", 1, 1024);
    const contextSize = optionalInt(values["context-size"], "--context-size", 16, 1 << 22);
    const idleSeconds = optionalInt(values["idle-timeout"], "--idle-timeout", 1, 7 * 24 * 3600);
    if (noAuth && !isLoopbackHost(host)) {
      throw new Error(`--no-auth is allowed only on a loopback address (127.0.0.1, ::1), not ${host}`);
    }
    if (token) checkTokenStrength(token); // before a possibly long download

    console.error(`Loading ${values.model} …`);
    const modelPath = await resolveModelSource(values.model, { onProgress: downloadProgress() });
    server = await startCloudServer({
      modelPath,
      host,
      port,
      token,
      allowNoAuth: noAuth,
      maxSessions,
      contextSize,
      idleTimeoutMs: idleSeconds === undefined ? undefined : idleSeconds * 1000,
    });
  } catch (err) {
    console.error(`tandem cloud: ${(err as Error).message}`);
    return 1;
  }

  const id = server.identity;
  console.log(`Tandem cloud token server listening on ${server.url}`);
  console.log(`  model:    ${id.name}`);
  console.log(`  vocab:    ${id.vocabSize} tokens, sha256 ${id.vocabHash.slice(0, 16)}…`);
  console.log(`  sessions: ${server.maxSessions} × ${server.contextSize} tokens`);
  if (token) {
    console.log(`  token:    ${token}${generated ? "   (generated: pass --token or set TANDEM_CLOUD_TOKEN to keep one)" : ""}`);
    console.log(`Clients connect to ${server.url} and send "Authorization: Bearer <token>".`);
  } else {
    console.log("  no token: only this machine can connect");
    console.log(`Clients on this machine connect to ${server.url} without a token.`);
  }
  console.log(`The device model must share this vocabulary (check: curl ${server.url}/health).`);
  if (!isLoopbackHost(server.host)) {
    console.log("Note: this is plain HTTP. Across the internet, put it behind a TLS proxy or an SSH tunnel.");
  }

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        console.error(`${signal} again: exiting now`);
        process.exit(130);
      }
      stopping = true;
      console.error(`${signal}: shutting down…`);
      server.close().then(
        () => resolve(0),
        (err: unknown) => {
          console.error(`tandem cloud: shutdown failed: ${(err as Error).message}`);
          resolve(1);
        },
      );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

function intArg(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got "${v}"`);
  }
  return n;
}

function optionalInt(v: string | undefined, name: string, min: number, max: number): number | undefined {
  return v === undefined ? undefined : intArg(v, name, min, max);
}

/** Prints download progress at most once per whole percent. */
function downloadProgress(): (p: { totalSize: number; downloadedSize: number }) => void {
  let last = -1;
  return ({ totalSize, downloadedSize }) => {
    const pct = totalSize > 0 ? Math.floor((downloadedSize / totalSize) * 100) : 0;
    if (pct === last) return;
    last = pct;
    process.stderr.write(`\rdownloading: ${pct}%${pct === 100 ? "\n" : ""}`);
  };
}

process.exitCode = await main();
// the model's native handles can keep the event loop alive after close(); the work is done
process.exit();
