/**
 * `npm run cloud -- --model <path|hf:uri> [options]` — the cloud token server (options: cloud/options.ts
 * or `--help`).
 *
 * On a GPU box (Linux x64 with an NVIDIA driver, or any machine with Vulkan; Metal on a Mac):
 *
 *   npm ci
 *   umask 077 && openssl rand -hex 24 > ~/.tandem-token
 *   npm run cloud -- --model hf:Qwen/Qwen2.5-32B-Instruct-GGUF:Q4_K_M --host 0.0.0.0 --port 8788 \
 *     --token-file ~/.tandem-token --max-kv-mb 16384
 *
 * - GPU: `--gpu auto` (the default) uses the CUDA or Vulkan build that ships prebuilt in node_modules
 *   (@node-llama-cpp/linux-x64-cuda, -vulkan; Metal on Apple Silicon) and offloads as many layers as
 *   fit; it falls back to the CPU, and says so in the `backend:` line. `--gpu cuda` fails instead.
 * - Memory: the KV cache of every session is allocated at start. Qwen2.5-32B takes 256 KiB per token,
 *   so a 4096-token session is 1 GiB: `--max-kv-mb 16384` gives 16 sessions (add `--max-sessions N`
 *   to pick fewer; more than fit is refused at start with the numbers). 7B: 56 KiB per token.
 * - Auth: a non-loopback host always has a token (`--no-auth` is refused there); without --token-file,
 *   --token or TANDEM_CLOUD_TOKEN a random one is generated and printed. Plain HTTP: across the
 *   internet put it behind a TLS proxy or an SSH tunnel.
 * - It prints the model's name, file and full vocabulary hash: the device checks the same hash at
 *   session creation, and `curl http://host:8788/health` shows it too.
 * - Exit codes: 0 after SIGINT/SIGTERM, 1 when the server cannot start (message on stderr), 2 for a
 *   command-line mistake.
 */
import { resolveModelSource } from "../inference/modelFile.js";
import { isLoopbackHost } from "./auth.js";
import { formatBytes } from "./memory.js";
import { parseCloudArgs, USAGE, type ParsedCloudArgs } from "./options.js";
import { UsageError, errorMessage } from "../shared/errors.js";
import { startCloudServer, type CloudServer } from "./server.js";

async function main(): Promise<number> {
  let args: ParsedCloudArgs;
  try {
    args = parseCloudArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  for (const w of args.warnings) console.error(`warning: ${w}`);

  let server: CloudServer;
  try {
    server = await start(args);
  } catch (err) {
    console.error(`tandem cloud: ${errorMessage(err)}`);
    return 1;
  }
  printBanner(server, args);
  return serveUntilSignal(server);
}

/** Fetches the models if they are not on disk yet, then starts the server. */
async function start(args: ParsedCloudArgs): Promise<CloudServer> {
  console.error(`Loading ${args.model} …`);
  const modelPath = await resolveModelSource(args.model, { onProgress: downloadProgress() });
  const replicaModelPath = args.server.replicaModelPath
    ? await resolveModelSource(args.server.replicaModelPath, { onProgress: downloadProgress() })
    : undefined;
  return startCloudServer({ ...args.server, modelPath, replicaModelPath });
}

/** What the operator needs: the address, the model and its vocabulary hash, the backend, memory, how clients authenticate. */
function printBanner(server: CloudServer, args: ParsedCloudArgs): void {
  const id = server.identity;
  const rt = server.runtime;
  const mem = server.memory();
  const token = args.server.token;
  console.log(`Tandem cloud token server listening on ${server.url}`);
  console.log(`  model:    ${id.name}`);
  console.log(`  vocab:    ${id.vocabSize} tokens, sha256 ${id.vocabHash}`);
  if (server.replica) console.log(`  replica:  ${server.replica.name} (the device's SLM: routed stretches in one round trip)`);
  console.log(`  backend:  ${rt.gpu === false ? "CPU" : `${rt.gpu}, ${rt.gpuLayers} of ${rt.totalLayers} layers on the GPU`}`);
  console.log(
    `  sessions: ${server.maxSessions} × ${server.contextSize} tokens; KV cache ${formatBytes(mem.kvBytesAllocated)} ` +
      `(${formatBytes(mem.kvBytesPerToken)} per token${mem.kvBytesBudget === null ? "" : `, budget ${formatBytes(mem.kvBytesBudget)}`})`,
  );
  if (token) {
    const shown =
      args.tokenSource === "generated"
        ? `${token}   (generated: use --token-file or TANDEM_CLOUD_TOKEN to keep one)`
        : `from ${args.tokenSource === "file" ? "--token-file" : args.tokenSource === "env" ? "TANDEM_CLOUD_TOKEN" : "--token"}`;
    console.log(`  token:    ${shown}`);
    console.log(`Clients connect to ${server.url} and send "Authorization: Bearer <token>".`);
  } else {
    console.log("  no token: only this machine can connect");
    console.log(`Clients on this machine connect to ${server.url} without a token.`);
  }
  console.log(`The device model must share this vocabulary (check: curl ${server.url}/health).`);
  if (!isLoopbackHost(server.host)) {
    console.log("Note: this is plain HTTP. Across the internet, put it behind a TLS proxy or an SSH tunnel.");
  }
}

/** Serves until SIGINT or SIGTERM (a second one exits at once): 0 after a clean shutdown, 1 if it failed. */
function serveUntilSignal(server: CloudServer): Promise<number> {
  return new Promise<number>((resolve) => {
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
          console.error(`tandem cloud: shutdown failed: ${errorMessage(err)}`);
          resolve(1);
        },
      );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
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
