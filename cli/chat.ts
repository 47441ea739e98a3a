/**
 * Terminal chat: one routed answer, tokens coloured by origin, then a summary.
 *
 *   npm run chat -- [--slm <path|uri>] [--llm <path|uri>] [--cloud <url>] [--token T] [--tau x]
 *                   [--cloud-kind tandem|llama.cpp|vllm|sglang] [--cloud-model NAME] [--assume-same-vocab]
 *                   [--max-tokens n] [--deadline-ms n] [--candidates k] [--json] [--no-color]
 *                   [--preset precise|balanced|creative] [--temperature x] [--top-k n] [--top-p x]
 *                   [--min-p x] [--repeat-penalty x] [--seed n] "prompt"
 *                   [--target-share x] (about x of the positions from the cloud; instead of --tau) [--local-only]
 *   npm run demo -- [same options]      (the stories260K-derived pair and an in-process cloud)
 *
 * Sampling (cli/samplingFlags.ts): Balanced by default with a new seed per answer, printed so it can be
 * reproduced; the demo defaults to Balanced with seed 1, the same answer every run.
 *
 * With --llm the cloud token server starts in-process on loopback with a random bearer token.
 * With --json: one JSON object per token event, then {"summary": {...}}; both carry the sampling settings and seed.
 * With --interactive: a REPL, one line a message (cli/interactive.ts), the history under the app's
 * context policy; --system sets the system prompt, --context the SLM's window (default: the model's).
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { parseArgs } from "node:util";
import { startCloudServer, type CloudServer } from "../cloud/server.js";
import { defaultSlm } from "../models/catalogue.js";
import type { AnswerSummary, Origin, TokenEvent } from "../shared/events.js";
import { validateTau } from "../shared/router.js";
import { loadRouterFor } from "../router/learnedRouter.js";
import { isRemoteModelUri, resolveModelSource, VocabularyMismatchError } from "../inference/modelFile.js";
import { ModelFileError } from "../inference/modelPreflight.js";
import { CloudCallError, type CloudPeer } from "../electron/engine/cloud/peer.js";
import { TandemCloudClient, DEFAULT_DEADLINE_MS } from "../electron/engine/cloud/tandemClient.js";
import { CLOUD_KINDS, createCloudPeer, vocabularyProbe, type CloudKind } from "../electron/engine/cloud/adapters/index.js";
import { authFailure, checkCloudSettings, CloudSettingsError } from "../electron/engine/cloudSettings.js";
import { CollaborativeDecoder } from "../electron/engine/decoder.js";
import { LocalModel } from "../inference/localModel.js";
import { preflightModelFile } from "../inference/modelPreflight.js";
import { demoPair } from "./demoPair.js";
import { terminalJson, terminalSafe } from "./terminalText.js";
import { runRepl } from "./interactive.js";
import { ContextPolicyError } from "../electron/engine/contextWindow.js";
import { planPrompt, truncationNotice } from "../electron/engine/conversationPrompt.js";
import type { ContextUsage } from "../shared/chat.js";
import { errorMessage, UsageError } from "../shared/errors.js";
import { FLAG_RANGES, numberFlag } from "./numberFlags.js";
import { resolveSampling, type SamplingConfig, type SamplingSettings } from "../shared/sampling.js";
import { describeSampling, SAMPLING_FLAG_OPTIONS, SAMPLING_USAGE, samplingFromFlags } from "./samplingFlags.js";
import { CalibrationStore, pairKey } from "../electron/engine/cloudControl/calibrationStore.js";
import { ShareSteer } from "../electron/engine/cloudControl/shareCalibration.js";
import { shareReport, steered } from "../electron/engine/cloudControl/steer.js";
import { localOnlyPeer } from "../electron/engine/cloudControl/guardedPeer.js";

const USAGE = `usage: npm run chat -- [--slm <path|hf:uri>] [--llm <path|hf:uri>] [--cloud <url>] [--token T]
                      [--cloud-kind tandem|llama.cpp|vllm|sglang] [--cloud-model NAME] [--assume-same-vocab]
                      [--tau x] [--max-tokens n] [--deadline-ms n] [--candidates k] [--router FILE]
                      ${SAMPLING_USAGE}
                      [--system "text"] [--context n] [--json] [--no-color] "prompt"
                      [--target-share x] [--local-only]
       npm run chat -- --interactive [same options]   (a REPL: one line a message; /system, /reset, /tau x, /exit)
       npm run demo -- [same options]`;

const COLORS: Record<Origin, string> = { local: "\x1b[32m", cloud: "\x1b[1;35m", fallback: "\x1b[33m" };
const RESET = "\x1b[0m";

interface Cli {
  demo: boolean;
  slm: string;
  llm?: string;
  cloud?: string;
  /** what serves --cloud: Tandem's token server or an existing engine (adapters) */
  cloudKind: CloudKind;
  /** vLLM's served model name */
  cloudModel?: string;
  /** the engine cannot check the vocabulary; the user vouches for it (docs/deploy-gpu.md) */
  assumeSameVocab: boolean;
  token?: string;
  router?: string;
  tau: number;
  /** about this share of positions from the cloud: τ calibrated as the answer goes (cloudControl/); excludes --tau */
  targetShare?: number;
  /** nothing leaves the device: no cloud server, session or call */
  localOnly: boolean;
  maxTokens: number;
  deadlineMs: number;
  /** the SLM's candidates shown with each token (--candidates) */
  candidates: number;
  /** how answers are sampled (--preset and the fields that override it) */
  sampling: SamplingConfig;
  json: boolean;
  color: boolean;
  prompt: string;
  interactive: boolean;
  system: string;
  /** the SLM's context size; undefined: the default (interactive: the model's own) */
  context?: number;
}

function parseCli(argv: string[]): Cli {
  try {
    return cliFrom(argv);
  } catch (err) {
    // node's own messages for an unknown option or a missing value are clear; they are usage errors
    if ((err as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) throw new UsageError(errorMessage(err));
    throw err;
  }
}

const OPTIONS = {
  demo: { type: "boolean", default: false },
  slm: { type: "string" },
  llm: { type: "string" },
  cloud: { type: "string" },
  "cloud-kind": { type: "string" },
  "cloud-model": { type: "string" },
  "assume-same-vocab": { type: "boolean", default: false },
  token: { type: "string" },
  router: { type: "string" },
  tau: { type: "string" },
  "target-share": { type: "string" },
  "local-only": { type: "boolean", default: false },
  "max-tokens": { type: "string" },
  "deadline-ms": { type: "string" },
  candidates: { type: "string" },
  ...SAMPLING_FLAG_OPTIONS,
  json: { type: "boolean", default: false },
  "no-color": { type: "boolean", default: false },
  interactive: { type: "boolean", short: "i", default: false },
  system: { type: "string" },
  context: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function cliFrom(argv: string[]): Cli {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const { cloud, kind, token } = cloudFlags(values);
  const demo = values.demo!;
  const interactive = values.interactive!;
  // interactive: a prompt given on the command line is the first message, if any
  const prompt = positionals.join(" ") || (demo && !interactive ? "Once upon a time" : "");
  if (!prompt && !interactive) throw new UsageError("no prompt given");
  return {
    demo,
    slm: values.slm ?? defaultSlm.uri,
    llm: values.llm,
    cloud,
    cloudKind: kind,
    cloudModel: values["cloud-model"],
    assumeSameVocab: values["assume-same-vocab"]!,
    token,
    router: values.router,
    tau: numberFlag("tau", values.tau, demo ? 0.5 : 0.3, FLAG_RANGES.tau),
    targetShare:
      values["target-share"] === undefined ? undefined : numberFlag("target-share", values["target-share"], 0, FLAG_RANGES.share),
    localOnly: values["local-only"]!,
    maxTokens: numberFlag("max-tokens", values["max-tokens"], demo ? 64 : 256, FLAG_RANGES.maxTokens),
    deadlineMs: numberFlag("deadline-ms", values["deadline-ms"], DEFAULT_DEADLINE_MS, FLAG_RANGES.deadlineMs),
    candidates: numberFlag("candidates", values.candidates, 0, FLAG_RANGES.candidates),
    sampling: samplingFromFlags(values, demo),
    json: values.json!,
    color: !values["no-color"] && !process.env.NO_COLOR,
    prompt,
    interactive,
    system: values.system ?? "",
    context: values.context === undefined ? undefined : numberFlag("context", values.context, 0, FLAG_RANGES.contextSize),
  };
}

type Values = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>["values"];

/** The flags that choose the cloud, checked in this order; settings that cannot work fail before a model loads. */
function cloudFlags(values: Values): { cloud?: string; kind: CloudKind; token?: string } {
  if (values.tau !== undefined && values["target-share"] !== undefined)
    throw new UsageError("--tau sets the threshold, --target-share calibrates it: give one, not both");
  if (values.llm && values.cloud) throw new UsageError("--llm starts a cloud in-process; give --llm or --cloud, not both");
  const token = values.token ?? process.env.TANDEM_CLOUD_TOKEN;
  // a CloudSettingsError: exit code 1
  const cloud = values.cloud === undefined ? undefined : checkCloudSettings({ url: values.cloud, token: token ?? "" }).url;
  const kind = (values["cloud-kind"] ?? "tandem") as CloudKind;
  if (!CLOUD_KINDS.includes(kind))
    throw new UsageError(`--cloud-kind: expected one of ${CLOUD_KINDS.join(", ")}, got ${JSON.stringify(values["cloud-kind"])}`);
  if (kind !== "tandem" && !cloud) throw new UsageError(`--cloud-kind ${kind} needs --cloud <url> (the engine's address)`);
  return { cloud, kind, token };
}

// every line the chat prints may carry text from a model file or a server
const log = (msg: string) => process.stderr.write(terminalSafe(msg) + "\n");

async function main(): Promise<number> {
  const cli = parseCli(process.argv.slice(2));
  if (cli.demo) await useDemoPair(cli);
  let server: CloudServer | undefined;
  const slm = await loadSlm(cli);
  try {
    if (cli.llm) server = await startInProcessCloud(cli);
    if (cli.localOnly) {
      cli.cloud = cli.llm = undefined;
      if (!cli.json) log("cloud: none (--local-only: nothing leaves this device)");
    }
    const cloud = cli.cloud ? await connectCloud(cli, slm) : null;
    const session = startSession(cli, slm, cloud);
    const code = cli.interactive ? await chatInteractively(cli, slm, session) : await answerOnce(cli, slm, session);
    await cloud?.close();
    return code;
  } finally {
    await server?.close();
    await slm.dispose();
  }
}

/** --demo: the stories260K-derived pair, unless --slm / --llm / --cloud / --local-only say otherwise. */
async function useDemoPair(cli: Cli): Promise<void> {
  const pair = await demoPair();
  cli.slm = process.argv.includes("--slm") ? cli.slm : pair.slm;
  if (!cli.cloud && !process.argv.includes("--llm") && !cli.localOnly) cli.llm = pair.llm;
}

async function loadSlm(cli: Cli): Promise<LocalModel> {
  // a truncated file or a model too large for this computer: a clear error before llama.cpp sees it
  if (cli.llm && !isRemoteModelUri(cli.llm)) await preflightModelFile(path.resolve(cli.llm));
  const slmFile = await resolveModelSource(cli.slm, { download: !cli.demo });
  await preflightModelFile(slmFile);
  // the hidden state costs nothing measurable and is what a learned router reads
  // a conversation defaults to the model's own window (within memory); one answer needs less
  return LocalModel.load(slmFile, { hiddenState: true, contextSize: cli.context ?? (cli.interactive ? "model" : undefined) });
}

/** --llm: the cloud token server on loopback with a random bearer token; the chat then uses it as --cloud. */
async function startInProcessCloud(cli: Cli): Promise<CloudServer> {
  const token = randomBytes(18).toString("base64url");
  const server = await startCloudServer({ modelPath: cli.llm!, host: "127.0.0.1", port: 0, token });
  cli.cloud = server.url;
  cli.token = token;
  if (!cli.json) log(`cloud: in-process token server at ${server.url} (${server.identity.name})`);
  return server;
}

function cloudPeer(cli: Cli, slm: LocalModel): CloudPeer {
  const common = {
    url: cli.cloud!,
    token: cli.token,
    deadlineMs: cli.deadlineMs,
    onStateChange: (s: string, detail?: string) => !cli.json && log(`cloud: ${s}${detail ? ` (${detail})` : ""}`),
  };
  // the probe is tokenised without BOS, as the engines' /tokenize endpoints do
  const engine = { ...common, probe: vocabularyProbe((t) => slm.model.tokenize(t, false)), assumeSameVocabulary: cli.assumeSameVocab };
  return cli.cloudKind === "tandem"
    ? new TandemCloudClient(common)
    : cli.cloudKind === "vllm"
      ? createCloudPeer({ kind: "vllm", model: cli.cloudModel, ...engine })
      : createCloudPeer({ kind: cli.cloudKind, ...engine });
}

async function connectCloud(cli: Cli, slm: LocalModel): Promise<CloudPeer> {
  const client = cloudPeer(cli, slm);
  try {
    const m = await client.connect(slm.identity);
    if (!cli.json) log(`cloud: connected to ${m.name}`);
  } catch (err) {
    // a wrong vocabulary or a refused token can never work: refuse before any token. An unreachable
    // or slow cloud may come back: go on locally (routed tokens become fallback), as the app does.
    if (err instanceof VocabularyMismatchError || (err instanceof CloudCallError && err.reason === "vocab_mismatch")) throw err;
    const refused = authFailure(err, cli.cloud!, !!cli.token);
    if (refused) throw new CloudSettingsError(refused);
    log(`cloud: offline (${errorMessage(err)}); answering locally`);
  }
  return client;
}

interface Session {
  decoder: CollaborativeDecoder;
  /** --target-share: a fresh τ controller per answer */
  newSteer?: () => ShareSteer;
}

/** The router, the decoder and the share controller, and the header lines that say what answers. */
function startSession(cli: Cli, slm: LocalModel, cloud: CloudPeer | null): Session {
  // a learned router trained for this SLM when one matches it (router/trained/), else the confidence router
  const { router, description } = loadRouterFor(slm, { file: cli.router });
  const decoder = new CollaborativeDecoder(slm, router, cli.localOnly ? localOnlyPeer() : cloud);
  const calibration = CalibrationStore.inMemory();
  const window = calibration.window(pairKey({ slm: slm.identity.name, router: router.name, cloud: cloud?.kind ?? null }));
  const newSteer = cli.targetShare === undefined ? undefined : () => new ShareSteer(window, cli.targetShare!);
  if (!cli.json) {
    log(
      `slm: ${slm.identity.name} · ${cli.targetShare === undefined ? `τ = ${validateTau(cli.tau)}` : `target cloud share ${cli.targetShare}`}`,
    );
    log(description);
    if (cli.color) log(`legend: ${COLORS.local}local${RESET} ${COLORS.cloud}cloud${RESET} ${COLORS.fallback}fallback${RESET}`);
  }
  return { decoder, newSteer };
}

function chatInteractively(cli: Cli, slm: LocalModel, { decoder, newSteer }: Session): Promise<number> {
  if (!cli.json) log(`context: ${slm.contextSize} tokens`);
  return runRepl(
    {
      decoder,
      system: cli.system,
      tau: cli.tau,
      newSteer,
      maxTokens: cli.maxTokens,
      topK: cli.candidates,
      sampling: cli.sampling,
      json: cli.json,
      paint: (ev) => paint(ev, cli.color),
      format: formatSummary,
      jsonSummary,
    },
    cli.prompt || undefined,
  );
}

/** One answer to the prompt, streamed as it comes (Ctrl-C stops it), then its summary. */
async function answerOnce(cli: Cli, slm: LocalModel, { decoder, newSteer }: Session): Promise<number> {
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  // the app's context policy: a prompt longer than the window keeps its end (and says so)
  const { tokens: prompt, plan } = planPrompt(slm, {
    system: cli.system || null,
    turns: [{ role: "user", content: cli.prompt }],
    keepFrom: 0,
    maxTokens: cli.maxTokens,
  });
  if (plan.usage.truncated) log(`notice: ${truncationNotice(plan.usage.window)}`);
  const sampling = resolveSampling(cli.sampling);
  if (!cli.json) log(describeSampling(sampling));
  if (!cli.json && !slm.hasChatTemplate) process.stdout.write(terminalSafe(cli.prompt));
  const steer = newSteer?.();
  const generated = decoder.generate(prompt, {
    tau: steer ? () => steer.tau() : cli.tau,
    maxTokens: cli.maxTokens,
    signal: abort.signal,
    topK: cli.candidates,
    sampling,
  });
  const answer = steer ? steered(generated, steer) : generated;
  for await (const ev of answer) {
    if (cli.json) process.stdout.write(jsonEvent(ev, sampling) + "\n");
    else process.stdout.write(paint(ev, cli.color));
  }
  const summary = await answer.summary;
  if (cli.json) process.stdout.write(terminalJson({ summary: { ...jsonSummary(summary), ...(steer ? shareReport(steer) : {}) } }) + "\n");
  else log("\n" + formatSummary(summary) + (steer ? ` · target share ${(100 * steer.target).toFixed(1)}%` : ""));
  return 0;
}

function paint(ev: TokenEvent, color: boolean): string {
  // the model's text is made safe before our own colour sequences are put around it
  const text = terminalSafe(ev.text);
  return color && text ? `${COLORS[ev.origin]}${text}${RESET}` : text;
}

function jsonSummary(s: AnswerSummary) {
  const { tokens, cloudTokens, fallbackTokens, cloudCalls, bytesUp, bytesDown, tokensPerSecond, text, stopReason, router, sampling } = s;
  const cloudShare = tokens ? cloudTokens / tokens : 0;
  return {
    tokens,
    cloudTokens,
    fallbackTokens,
    cloudCalls,
    bytesUp,
    bytesDown,
    tokensPerSecond,
    text,
    stopReason,
    router,
    sampling,
    cloudShare,
  };
}

/** A --json token line: the event and what it was sampled with (so any line says how to reproduce it). */
function jsonEvent(ev: TokenEvent, sampling: SamplingSettings): string {
  return terminalJson({ ...ev, sampling });
}

function formatSummary(s: AnswerSummary, usage?: ContextUsage): string {
  const share = s.tokens ? ((100 * s.cloudTokens) / s.tokens).toFixed(1) : "0.0";
  const context = usage
    ? ` · context ${usage.used}/${usage.window}${usage.droppedMessages ? ` (${usage.droppedMessages} older messages left out)` : ""}${usage.truncated ? " (message cut to its end)" : ""}`
    : "";
  return (
    `— ${s.tokens} tokens · ${s.cloudTokens} cloud (${share}%) · ${s.fallbackTokens} fallback · ${s.cloudCalls} cloud calls · ` +
    `${s.bytesUp} B up / ${s.bytesDown} B down · ${s.tokensPerSecond.toFixed(1)} tokens/s · stop: ${s.stopReason}${context}` +
    (s.sampling && s.sampling.temperature > 0 ? ` · seed ${s.sampling.seed}` : "")
  );
}

main().then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) {
      console.error(`error: ${terminalSafe(err.message)}\n${USAGE}`);
      process.exit(2);
    }
    // what a user can cause (files, settings, the cloud) is a message; anything else is a bug, whose
    // stack trace helps only a developer: it is printed on request
    const known =
      err instanceof ContextPolicyError ||
      err instanceof ModelFileError ||
      err instanceof VocabularyMismatchError ||
      err instanceof CloudCallError ||
      err instanceof CloudSettingsError;
    const message = terminalSafe(errorMessage(err));
    if (known) console.error(`error: ${message}`);
    else if (process.env.TANDEM_DEBUG) console.error(`error: ${terminalSafe((err as Error)?.stack ?? message)}`);
    else console.error(`error: ${message} (TANDEM_DEBUG=1 shows where it happened)`);
    process.exit(1);
  },
);
