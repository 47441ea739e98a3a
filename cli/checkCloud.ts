/**
 * `npm run cloud:check -- --kind <tandem|llama.cpp|vllm|sglang> --url U [--token T] [--model NAME]
 *                         [--slm <path|hf:uri>] [--timeout-ms N] [--json]`
 *
 * Checks that a cloud serves a model with the device model's vocabulary, in the ways its engine
 * allows (electron/engine/cloud/adapters/vocabCheck.ts), then makes one next-token call and, for an
 * engine, probes whether its sampling defaults (a model's generation config, a GGUF's
 * general.sampling.*, SGLang's preferred parameters) would change the greedy token (WARN: Tandem's
 * adapter overrides them). Prints PASS / FAIL / WARN / SKIP per check and a result line. Exit code: 0 PASS, 1 FAIL or UNVERIFIED (nothing
 * could compare the vocabularies), 2 usage or device-model error.
 */
import { parseArgs } from "node:util";
import { defaultSlm } from "../models/catalogue.js";
import { getTandemLlama } from "../inference/llama.js";
import { resolveModelSource } from "../inference/modelFile.js";
import { checkGgufFile } from "../inference/modelPreflight.js";
import { parseCloudUrl } from "../electron/engine/cloud/callSupport.js";
import { CLOUD_KINDS, type CloudKind } from "../electron/engine/cloud/adapters/index.js";
import { runCloudCheck, type CheckLine, type CloudCheckReport } from "../electron/engine/cloud/adapters/vocabCheck.js";
import { deviceVocabulary } from "../electron/engine/cloud/adapters/vocabulary.js";
import { errorMessage } from "../shared/errors.js";

const USAGE = `usage: npm run cloud:check -- --kind <${CLOUD_KINDS.join("|")}> --url <url> [--token T] [--model NAME]
                            [--slm <path|hf:uri>] [--timeout-ms N] [--json]

  --kind        the cloud's engine: tandem (npm run cloud), llama.cpp (llama-server), vllm, sglang
  --url         its base URL, e.g. https://gpu-box.example:8443
  --token       bearer token / API key (default: $TANDEM_CLOUD_TOKEN)
  --model       vLLM: the served model name (default: the first of /v1/models)
  --slm         the device model whose vocabulary must match (default: ${defaultSlm.uri})
  --timeout-ms  per request (default 15000)
  --json        one JSON report instead of the table

Exit code: 0 PASS, 1 FAIL or UNVERIFIED, 2 usage error.`;

const COLOR: Record<CheckLine["status"], string> = { PASS: "\x1b[32m", FAIL: "\x1b[31m", WARN: "\x1b[33m", SKIP: "\x1b[2m" };

/** What to check, from the command line. */
interface Flags {
  kind: CloudKind;
  url: string;
  token?: string;
  model?: string;
  slm: string;
  timeoutMs?: number;
  json: boolean;
}

const OPTIONS = {
  kind: { type: "string" },
  url: { type: "string" },
  token: { type: "string" },
  model: { type: "string" },
  slm: { type: "string" },
  "timeout-ms": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The flags as given; node's message for an unknown option or a missing value, with the usage: exit 2. */
function parseFlags() {
  try {
    return parseArgs({ options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    console.error(`${errorMessage(err)}\n\n${USAGE}`);
    return 2;
  }
}

/**
 * The flags checked in order; a number is the exit code when there is nothing to check (each failure
 * a message and 2; --help the usage and 0).
 */
function checkFlags(): Flags | number {
  const values = parseFlags();
  if (typeof values === "number") return values;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const kind = values.kind as CloudKind | undefined;
  if (!kind || !CLOUD_KINDS.includes(kind)) {
    console.error(`--kind must be one of ${CLOUD_KINDS.join(", ")}${kind ? `, not ${JSON.stringify(kind)}` : ""}\n\n${USAGE}`);
    return 2;
  }
  if (!values.url) {
    console.error(`--url is required\n\n${USAGE}`);
    return 2;
  }
  try {
    parseCloudUrl(values.url); // before a possibly long model download
  } catch (err) {
    console.error(`cloud:check: ${errorMessage(err)}`);
    return 2;
  }
  let timeoutMs: number | undefined;
  if (values["timeout-ms"] !== undefined) {
    timeoutMs = Number(values["timeout-ms"]);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100) {
      console.error(`--timeout-ms must be an integer ≥ 100, got ${JSON.stringify(values["timeout-ms"])}`);
      return 2;
    }
  }
  const token = values.token ?? process.env.TANDEM_CLOUD_TOKEN;
  return { kind, url: values.url, token, model: values.model, slm: values.slm ?? defaultSlm.uri, timeoutMs, json: values.json! };
}

type DeviceVocabulary = ReturnType<typeof deviceVocabulary>;

/** Only the tokenizer is needed: a vocabulary-only load reads no weights (seconds, even for 32B). */
async function loadDeviceVocabulary(slmSource: string): Promise<{ vocab: DeviceVocabulary; dispose: () => Promise<void> } | number> {
  try {
    const file = await resolveModelSource(slmSource);
    await checkGgufFile(file);
    const llama = await getTandemLlama();
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
    return { vocab: deviceVocabulary(model), dispose: () => model.dispose() };
  } catch (err) {
    console.error(`cloud:check: cannot read the device model ${slmSource}: ${errorMessage(err)}`);
    return 2;
  }
}

function describeDevice(vocab: DeviceVocabulary): string {
  const id = vocab.identity;
  const padding = vocab.realSize < id.vocabSize ? `, ${vocab.realSize} before [PAD] padding` : "";
  return `device model: ${id.name}: ${id.vocabSize} tokens${padding}, vocab sha256 ${id.vocabHash.slice(0, 16)}…`;
}

const EXPLAIN: Record<CloudCheckReport["result"], string> = {
  PASS: "every check that could compare the vocabularies agreed",
  FAIL: "do not use this pair for token-level routing until the failures above are fixed",
  UNVERIFIED: "nothing could compare the vocabularies; confirm them by hand as docs/deploy-gpu.md says",
};

async function main(): Promise<number> {
  const flags = checkFlags();
  if (typeof flags === "number") return flags;
  const { kind, url, json } = flags;
  const color = !json && process.stdout.isTTY && !process.env.NO_COLOR;
  const say = (s: string) => {
    if (!json) console.log(s);
  };
  const device = await loadDeviceVocabulary(flags.slm);
  if (typeof device === "number") return device;

  say(`Checking ${kind} at ${url}`);
  say(describeDevice(device.vocab));
  let report;
  try {
    report = await runCloudCheck({
      kind,
      url,
      token: flags.token,
      model: flags.model,
      device: device.vocab,
      timeoutMs: flags.timeoutMs,
      onCheck: (c) => {
        const status = color ? `${COLOR[c.status]}${c.status}\x1b[0m` : c.status;
        say(`${status}  ${c.name.padEnd(16)} ${c.detail}`);
      },
    });
  } catch (err) {
    console.error(`cloud:check: ${errorMessage(err)}`);
    await device.dispose();
    return 2;
  }
  await device.dispose();
  if (json) console.log(JSON.stringify(report));
  else say(`RESULT: ${report.result}: ${EXPLAIN[report.result]}`);
  return report.result === "PASS" ? 0 : 1;
}

process.exitCode = await main();
// node-llama-cpp's native handles can keep the event loop alive after dispose(); the work is done
process.exit();
