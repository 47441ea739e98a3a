/**
 * `npm run web` — Tandem in a browser (Linux users, the UI tests).
 *
 *   npm run web -- [--port 5174] [--data <dir>] [--slm <path|hf:uri>] [--llm <path|hf:uri>]
 *                  [--cloud <url> --token T] [--no-cloud] [--tau x] [--pace-ms n] [--max-tokens n]
 *
 * Without --slm: the fixture pair (stories260K-derived when ../shared is there, else the random
 * Qwen2-vocabulary pair) with the LLM in an in-process cloud token server on loopback.
 * The URL is printed as "Tandem browser mode: http://127.0.0.1:PORT/".
 */
import { randomBytes } from "node:crypto";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startCloudServer, type CloudServer } from "../cloud/server.js";
import { emptyStage, bindService, TandemService } from "../electron/engine/service.js";
import { APP_TARGET_SHARE } from "../shared/cloudControl.js";
import { preflightModelFile } from "../inference/modelPreflight.js";
import { isRemoteModelUri } from "../inference/modelFile.js";
import { defaultModelsDir } from "../inference/appFolders.js";
import type { CloudSettings, StageStatus } from "../shared/bridge.js";
import { startWebServer } from "./server.js";
import { errorMessage, UsageError } from "../shared/errors.js";
import { FLAG_RANGES, numberFlag } from "../cli/numberFlags.js";
import { lockDataFolder } from "../electron/engine/dataLock.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const OPTIONS = {
  port: { type: "string", default: "5174" },
  host: { type: "string", default: "127.0.0.1" },
  data: { type: "string" },
  slm: { type: "string" },
  llm: { type: "string" },
  cloud: { type: "string" },
  token: { type: "string" },
  "no-cloud": { type: "boolean", default: false },
  // start with no local model, as the app does on first run: the UI offers the catalogue
  "first-run": { type: "boolean", default: false },
  // no default: a flag overrides the saved value only when given (settings.json)
  tau: { type: "string" },
  "pace-ms": { type: "string" },
  "max-tokens": { type: "string" },
  static: { type: "string", default: path.join(repoRoot, "dist", "renderer") },
} as const;

const USAGE = `usage: npm run web -- [--port 5174] [--data <dir>] [--slm <path|hf:uri>] [--llm <path|hf:uri>]
                     [--cloud <url> --token T] [--no-cloud] [--first-run] [--tau x] [--pace-ms n] [--max-tokens n]`;

/** The command line, checked before anything starts (a UsageError: exit code 2). */
function parseCli(args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const { values } = parsed;
  return {
    values,
    port: numberFlag("port", values.port, 5174, FLAG_RANGES.port),
    tau: values.tau === undefined ? undefined : numberFlag("tau", values.tau, 0, FLAG_RANGES.tau),
    paceMs: values["pace-ms"] === undefined ? undefined : numberFlag("pace-ms", values["pace-ms"], 0, FLAG_RANGES.paceMs),
    maxTokens: values["max-tokens"] === undefined ? undefined : numberFlag("max-tokens", values["max-tokens"], 0, FLAG_RANGES.maxTokens),
  };
}

type Cli = ReturnType<typeof parseCli>;
type Values = Cli["values"];

/** Browser mode has no login: anything but loopback is refused before the data folder is touched. */
function checkLoopback(values: Values): void {
  if (values.host !== "127.0.0.1" && values.host !== "localhost" && values.host !== "::1") {
    throw new Error("Browser mode serves the engine without a login: it listens on loopback only");
  }
}

/** The models to serve: the flags, or without --slm the fixture pair (whose LLM --llm may replace). */
async function chooseModels(values: Values): Promise<{ slm?: string; llm?: string; fixtures: boolean }> {
  if (values.slm) return { slm: values.slm, llm: values.llm, fixtures: false };
  const { ensureFixtures } = await import("../models/fixtures.js");
  const f = await ensureFixtures();
  if (f.storiesSlm && f.storiesLlm) return { slm: f.storiesSlm, llm: values.llm ?? f.storiesLlm, fixtures: true };
  console.log(`fixtures: ${f.sharedMissingReason ?? "../shared missing"}; using the random Qwen2-vocabulary pair`);
  return { slm: f.randA, llm: values.llm ?? f.randB, fixtures: true };
}

interface CloudChoice {
  /** given: overrides the saved cloud */
  cloud?: CloudSettings;
  /** the in-process server: only the default when nothing is saved */
  cloudDefault?: CloudSettings;
  llmStage: StageStatus;
  cloudServer?: CloudServer;
}

/** The cloud from the flags, else the LLM in an in-process token server (its failure is the LLM's status). */
async function chooseCloud(values: Values, llm: string | undefined): Promise<CloudChoice> {
  const none: CloudSettings | undefined = values["no-cloud"] ? { kind: "none", url: "", token: "" } : undefined;
  if (values.cloud)
    return {
      cloud: { kind: "tandem", url: values.cloud, token: values.token ?? process.env.TANDEM_CLOUD_TOKEN ?? "" },
      llmStage: emptyStage(),
    };
  if (!llm || values["no-cloud"]) return { cloud: none, llmStage: emptyStage() };
  const token = randomBytes(18).toString("base64url");
  const llmStage: StageStatus = { ...emptyStage(llm) };
  try {
    // a truncated or too large model: a clear error in the model status instead of a failed or endless load
    if (!isRemoteModelUri(llm)) await preflightModelFile(path.resolve(llm));
    const cloudServer = await startCloudServer({ modelPath: llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    console.log(`cloud: in-process token server at ${cloudServer.url} (${cloudServer.identity.name})`);
    return {
      cloud: none,
      cloudDefault: { kind: "tandem", url: cloudServer.url, token },
      llmStage: { ...llmStage, loaded: true, name: cloudServer.identity.name },
      cloudServer,
    };
  } catch (err) {
    return { cloud: none, llmStage: { ...llmStage, error: errorMessage(err) } };
  }
}

async function main(): Promise<void> {
  const cli = parseCli(process.argv.slice(2));
  const { values } = cli;
  checkLoopback(values);
  const dataDir = path.resolve(values.data ?? process.env.TANDEM_DATA_DIR ?? path.join(homedir(), ".tandem"));
  // the folder first: a second instance is refused at once, before it spends a minute loading an LLM
  const dataLock = await lockDataFolder(dataDir);
  const { slm, llm, fixtures } = await chooseModels(values);
  const { cloud, cloudDefault, llmStage, cloudServer } = await chooseCloud(values, llm);

  const service = await TandemService.start({
    dataDir,
    dataLock,
    // the app's models folder (~/Tandem/Models, TANDEM_MODELS_DIR), shared with the Electron app; an
    // explicit --data (tests) keeps its downloads inside it
    modelsDir: values.data && !process.env.TANDEM_MODELS_DIR ? undefined : defaultModelsDir(),
    slm: values["first-run"] ? null : slm!,
    cloud,
    cloudDefault,
    llm: llmStage,
    tau: cli.tau,
    freshTargetShare: APP_TARGET_SHARE, // the app's default control; --tau makes τ the control
    // tiny fixture models answer faster than the eye: pace them unless told otherwise
    paceMs: cli.paceMs ?? (fixtures ? 25 : 0),
    maxTokens: cli.maxTokens ?? (fixtures ? 160 : 512),
  });
  const web = await startWebServer({
    staticDir: values.static!,
    api: bindService(service),
    subscribe: (l) => service.subscribe(l),
    host: values.host,
    port: cli.port,
  });
  await reportStarted(service, dataDir, web.url);
  closeOnSignals(async () => {
    await web.close();
    await service.close();
    await cloudServer?.close();
  });
}

/** What the model loads said, then the URL (the tests and the user wait for that line). */
async function reportStarted(service: TandemService, dataDir: string, url: string): Promise<void> {
  const snap = await service.snapshot();
  if (snap.models.slm.error) console.log(`slm: ${snap.models.slm.error}`);
  for (const n of snap.notices) console.log(`notice: ${n}`);
  console.log(`data: ${dataDir}`);
  console.log(`Tandem browser mode: ${url}`);
}

/** Ctrl-C or a TERM closes everything once, then exits 0. */
function closeOnSignals(close: () => Promise<void>): void {
  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    await close();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

// A rejected promise nobody awaited is a bug to fix, but not one worth the user's answer in progress
// and the in-process cloud: browser mode logs it and keeps serving (Node's default is to exit).
process.on("unhandledRejection", (reason) => console.error("unhandled rejection:", reason));

main().catch((err) => {
  console.error(`error: ${errorMessage(err) ?? err}`);
  if (err instanceof UsageError) console.error(USAGE);
  process.exit(err instanceof UsageError ? 2 : 1);
});
