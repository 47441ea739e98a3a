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
import { runCloudCheck, type CheckLine } from "../electron/engine/cloud/adapters/vocabCheck.js";
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

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        kind: { type: "string" },
        url: { type: "string" },
        token: { type: "string" },
        model: { type: "string" },
        slm: { type: "string" },
        "timeout-ms": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(`${errorMessage(err)}\n\n${USAGE}`);
    return 2;
  }
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
  const json = values.json;
  const color = !json && process.stdout.isTTY && !process.env.NO_COLOR;
  const say = (s: string) => {
    if (!json) console.log(s);
  };

  // Only the tokenizer is needed: a vocabulary-only load reads no weights (seconds, even for 32B).
  const slmSource = values.slm ?? defaultSlm.uri;
  let vocab;
  let dispose: () => Promise<void>;
  try {
    const file = await resolveModelSource(slmSource);
    await checkGgufFile(file);
    const llama = await getTandemLlama();
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
    vocab = deviceVocabulary(model);
    dispose = () => model.dispose();
  } catch (err) {
    console.error(`cloud:check: cannot read the device model ${slmSource}: ${errorMessage(err)}`);
    return 2;
  }

  say(`Checking ${kind} at ${values.url}`);
  const id = vocab.identity;
  const padding = vocab.realSize < id.vocabSize ? `, ${vocab.realSize} before [PAD] padding` : "";
  say(`device model: ${id.name}: ${id.vocabSize} tokens${padding}, vocab sha256 ${id.vocabHash.slice(0, 16)}…`);
  let report;
  try {
    report = await runCloudCheck({
      kind,
      url: values.url,
      token: values.token ?? process.env.TANDEM_CLOUD_TOKEN,
      model: values.model,
      device: vocab,
      timeoutMs,
      onCheck: (c) => {
        const status = color ? `${COLOR[c.status]}${c.status}\x1b[0m` : c.status;
        say(`${status}  ${c.name.padEnd(16)} ${c.detail}`);
      },
    });
  } catch (err) {
    console.error(`cloud:check: ${errorMessage(err)}`);
    await dispose();
    return 2;
  }
  await dispose();
  if (json) {
    console.log(JSON.stringify(report));
  } else {
    const explain =
      report.result === "PASS"
        ? "every check that could compare the vocabularies agreed"
        : report.result === "FAIL"
          ? "do not use this pair for token-level routing until the failures above are fixed"
          : "nothing could compare the vocabularies; confirm them by hand as docs/deploy-gpu.md says";
    say(`RESULT: ${report.result}: ${explain}`);
  }
  return report.result === "PASS" ? 0 : 1;
}

process.exitCode = await main();
// node-llama-cpp's native handles can keep the event loop alive after dispose(); the work is done
process.exit();
