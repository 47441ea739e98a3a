/**
 * `npm run soak -- [--minutes 5] [--sessions 64] [--model F] [--context-size 512] [--seed 1]
 *                  [--max-growth-mb 24] [--url http://host:8788 --token-file F]`
 *
 * Holds N concurrent sessions against the cloud token server for a few minutes (cloud/soak.ts says
 * what they do and what counts as failure), then prints a summary and, last, one JSON line
 * `{"soak": {...}}`. Exit code 0 when clean, 1 on any error or memory growth beyond the bound, 2 for a
 * command-line mistake. Without --url it starts the server itself (the stories260K fixture by default)
 * in a child process, so the memory it samples is the server's alone; with --url it soaks a running
 * server (e.g. the GPU box, token from --token-file or TANDEM_CLOUD_TOKEN). The sessions must fit its
 * --max-sessions, and they share one client key (one token, one address), so start it with a
 * --rate-limit above their request rate (a few hundred per second on loopback) or they get 429s.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ensureFixtures } from "../models/fixtures.js";
import { mib, runSoak, type SoakOptions, type SoakReport } from "./soak.js";
import { errorMessage } from "../shared/errors.js";

const USAGE = `Usage: npm run soak -- [--minutes 5] [--sessions 64] [--model <gguf>] [--context-size 512] [--seed 1]
                     [--max-growth-mb 24] [--url <server> --token-file <file>]`;

const FLAGS = {
  minutes: { type: "string", default: "5" },
  sessions: { type: "string", default: "64" },
  model: { type: "string" },
  "context-size": { type: "string", default: "512" },
  seed: { type: "string", default: "1" },
  "max-growth-mb": { type: "string", default: "24" },
  url: { type: "string" },
  "token-file": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

type SoakFlags = ReturnType<typeof parseArgs<{ options: typeof FLAGS; strict: true; allowPositionals: false }>>["values"];

async function main(): Promise<number> {
  let values: SoakFlags;
  try {
    ({ values } = parseArgs({ options: FLAGS, strict: true, allowPositionals: false }));
  } catch (err) {
    console.error(`${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let opts: SoakOptions, minutes: number;
  try {
    ({ opts, minutes } = await soakOptions(values));
  } catch (err) {
    console.error(`soak: ${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  console.log(`soak: ${opts.sessions} sessions for ${minutes} min against ${values.url ?? `a server started here (${opts.model})`}`);
  let report: SoakReport;
  try {
    report = await runSoak(opts);
  } catch (err) {
    console.error(`soak: ${errorMessage(err)}`);
    console.log(JSON.stringify({ soak: { ok: false, error: errorMessage(err) } }));
    return 1;
  }
  printReport(report);
  return report.ok ? 0 : 1;
}

/** The run the flags ask for, each number range-checked; the token from --token-file or the environment, the model the stories fixture by default. */
async function soakOptions(values: SoakFlags): Promise<{ opts: SoakOptions; minutes: number }> {
  const num = (v: string, name: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name} must be a number from ${min} to ${max}, got "${v}"`);
    return n;
  };
  // bounded and self-stopping: at most a day
  const minutes = num(values.minutes, "--minutes", 0.1, 24 * 60);
  const sessions = Math.floor(num(values.sessions, "--sessions", 1, 256));
  const contextSize = Math.floor(num(values["context-size"], "--context-size", 64, 1 << 20));
  const seed = Math.floor(num(values.seed, "--seed", 0, 2 ** 31));
  const maxGrowthMb = num(values["max-growth-mb"], "--max-growth-mb", 0, 1 << 20);
  let token: string | undefined;
  let model: string | undefined = values.model;
  if (values.url) {
    token = values["token-file"] ? readFileSync(values["token-file"], "utf8").split(/\r?\n/, 1)[0].trim() : process.env.TANDEM_CLOUD_TOKEN;
  } else if (!model) {
    const f = await ensureFixtures();
    if (!f.storiesLlm) throw new Error(`no model: ${f.sharedMissingReason ?? "stories fixture missing"}; pass --model`);
    model = f.storiesLlm;
  }
  const opts: SoakOptions = {
    sessions,
    durationMs: Math.round(minutes * 60_000),
    url: values.url,
    token,
    model,
    contextSize,
    seed,
    maxGrowthBytes: maxGrowthMb * 1024 * 1024,
    log: (line) => console.log(line),
  };
  return { opts, minutes };
}

/** The summary lines, the failures, and last the report as one JSON line. */
function printReport(report: SoakReport): void {
  const m = report.memory;
  console.log(
    `soak ${report.ok ? "passed" : "FAILED"}: ${report.sessions} sessions, ${(report.durationMs / 1000).toFixed(0)} s, ` +
      `${report.requests} requests (${report.requestsPerSecond}/s), ${report.failureCount} errors; ` +
      `${report.predictions} predictions, ${report.rollbacks} rollbacks, ${report.truncates} truncations, ` +
      `${report.rePredictions} re-predictions (${report.tieFlips} near-tie flips), ${report.recreated} re-created; ` +
      `next p50 ${report.nextLatencyMs.p50} ms, p99 ${report.nextLatencyMs.p99} ms`,
  );
  console.log(
    `  server RSS: first half ${mib(m.firstHalfRssMedianBytes)} MiB, second half ${mib(m.secondHalfRssMedianBytes)} MiB ` +
      `(growth ${mib(m.growthBytes)} MiB, bound ${mib(m.maxGrowthBytes)}), peak ${mib(m.peakRssBytes)} MiB over ${m.samples} samples; ` +
      `heap ${mib(m.firstHalfHeapMedianBytes)} → ${mib(m.secondHalfHeapMedianBytes)} MiB; ` +
      `KV in use ≤ ${mib(m.peakKvBytesInUse)} of ${mib(m.kvBytesAllocated)} MiB allocated; queue peak ${m.peakPending}`,
  );
  for (const f of report.failures) console.log(`  error: ${f}`);
  console.log(JSON.stringify({ soak: report }));
}

process.exitCode = await main();
