/**
 * npm run eval -- [--slm PATH] [--llm PATH] [--router FILE] [--distilled FILE] [--text FILE | --dataset NAME] [--limit N]
 *                 [--max-tokens N] [--prompt-tokens N] [--shares 0.025,0.05,...] [--novel-ngram N]
 *                 [--out DIR] [--seed N] [--no-train] [--json]
 *                 [--preset precise|balanced|creative] [--temperature x] [--top-k n] [--top-p x] [--min-p x] [--seeds n]
 *
 * Default: the stories260K fixture pair, continuation of prompts from the held-out last 20% of
 * ../shared/data/tinystories_sample_train.txt (the router trains on the first 80%). When no learned
 * router matches the SLM, one is labelled and trained first (about a minute here) unless --no-train.
 * Writes <out>/table.txt, results.csv, results.json and plot.svg; with --json the last line is
 * {"eval": {"rows": [...]}}.
 *
 * Sampling: eval is greedy by default (the Precise preset), so its tables compare routers, not luck.
 * `--temperature x` (or a preset, and the other flags) samples the free-running decodings as the app
 * does, once per seed (`--seeds n`, default 3: seeds --seed, --seed + 1, …), and reports each value's
 * mean and spread over the seeds. Penalties stay off (eval reads probabilities, not logits).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { LocalModel } from "../inference/localModel.js";
import { ConfidenceRouter } from "../shared/router.js";
import { defaultLabelsFile, defaultPair } from "../router/training/args.js";
import { readLabelFile, writeLabelFile } from "../router/training/labelFile.js";
import { defaultRouterDir, loadRouterFor, LearnedRouter } from "../router/learnedRouter.js";
import { DEFAULT_LABEL_OPTIONS, labelAndTrain } from "../router/training/pipeline.js";
import { bindingOf, decodeRouterFile, decodeSeen, distilledRouterFileName, readRouterFileJson } from "../router/file.js";
import { defaultTrainingTextPath, NgramIndex, readText, repoRoot, samplePrompts, splitText } from "../router/training/text.js";
import { loadDataset } from "../router/training/datasets.js";
import { measureFeatureCost } from "./featureCost.js";
import { evaluate, REQUIRED_SHARES, type EvalPrompt } from "./harness.js";
import { jsonLine, rowsTable, summaryTable, toCsv, toSvg } from "./report.js";
import { evalSampling, samplingLabel, type EvalSampling } from "./samplingArgs.js";
import { UsageError } from "../shared/errors.js";

const { values: a } = parseArgs({
  options: {
    slm: { type: "string" },
    llm: { type: "string" },
    router: { type: "string" },
    distilled: { type: "string" },
    text: { type: "string" },
    dataset: { type: "string" },
    limit: { type: "string" },
    "max-tokens": { type: "string" },
    "prompt-tokens": { type: "string" },
    shares: { type: "string" },
    "novel-ngram": { type: "string" },
    out: { type: "string" },
    seed: { type: "string" },
    "no-train": { type: "boolean" },
    json: { type: "boolean" },
    preset: { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    "min-p": { type: "string" },
    seeds: { type: "string" },
  },
});
// checked before any model loads: a bad flag is a usage error, not a failed run
let sampling: EvalSampling | undefined;
try {
  sampling = evalSampling(a, Number(a.seed ?? 1));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`npm run eval: ${err.message}`);
  process.exit(2);
}

const log = (s: string) => (a.json ? process.stderr.write(s + "\n") : console.log(s));
const t0 = performance.now();
const pair = await defaultPair(a.slm, a.llm);
const slm = await LocalModel.load(pair.slm, { contextSize: 2048, hiddenState: true });
const llm = await LocalModel.load(pair.llm, { contextSize: 2048 });
try {
  if (slm.identity.vocabHash !== llm.identity.vocabHash)
    throw new Error(`${slm.identity.name} and ${llm.identity.name} do not share a vocabulary`);
  const seed = Number(a.seed ?? 1);
  const trainingText = readText(defaultTrainingTextPath());

  // ---- the learned router ----
  let choice = loadRouterFor(slm, { file: a.router });
  if (choice.kind !== "learned" && !a["no-train"]) {
    log(`${choice.description}: labelling and training one (npm run router:label && npm run router:train do the same)`);
    const { file, set } = await labelAndTrain(slm, llm, { text: trainingText, seed, labelsFile: defaultLabelsFile(slm), log });
    writeLabelFile(defaultLabelsFile(slm), set);
    choice = loadRouterFor(slm, { file });
  }
  log(choice.description);
  const learned = choice.kind === "learned" && choice.router instanceof LearnedRouter ? choice.router : null;
  // the confidence router's student, when one was distilled for this SLM (npm run router:distill)
  const distilledFile = a.distilled ?? path.join(defaultRouterDir(), distilledRouterFileName(bindingOf(slm)));
  const distilled = a.distilled || fs.existsSync(distilledFile) ? LearnedRouter.load(distilledFile, slm) : null;
  log(
    distilled ? `distilled router: ${distilled.name}` : `no distilled router for ${slm.identity.name} (npm run router:distill makes one)`,
  );

  // ---- what the router saw: the unseen-context index ----
  const novelN = Number(a["novel-ngram"] ?? 8);
  const index = new NgramIndex(novelN);
  // the sequences the learned router was trained on travel in its file; else the SLM's label file
  const seen = learned?.file ? decodeRouterFile(readRouterFileJson(learned.file)).json.seen : undefined;
  const labelsFile = defaultLabelsFile(slm);
  if (seen) for (const s of decodeSeen(seen)) index.add(s);
  else if (fs.existsSync(labelsFile)) for (const s of readLabelFile(labelsFile).sequences) index.add(s);
  index.add(slm.tokenizeText(splitText(trainingText, DEFAULT_LABEL_OPTIONS.trainFraction).train));

  // ---- prompts ----
  let prompts: EvalPrompt[];
  let maxTokens = Number(a["max-tokens"] ?? 48);
  let what: string;
  if (a.dataset) {
    const { dataset, items } = loadDataset(a.dataset, Number(a.limit ?? 50));
    maxTokens = Number(a["max-tokens"] ?? dataset.maxTokens);
    prompts = items.map((it) => ({ prompt: slm.promptFromMessages([{ role: "user", content: it.message }]), check: it.check }));
    what = `${dataset.name}, ${items.length} questions`;
  } else {
    const text = a.text ? readText(a.text) : splitText(trainingText, DEFAULT_LABEL_OPTIONS.trainFraction).heldOut;
    prompts = samplePrompts(text, (s) => slm.tokenizeText(s), Number(a.limit ?? 100), Number(a["prompt-tokens"] ?? 12), seed + 7).map(
      (prompt) => ({ prompt }),
    );
    what = a.text ? `continuation of ${path.basename(a.text)}` : "continuation of held-out TinyStories text";
  }
  if (prompts.length === 0) throw new Error("No prompts: the text is too short");
  const shares = a.shares ? a.shares.split(",").map(Number) : REQUIRED_SHARES;
  log(
    `evaluating ${what}: ${prompts.length} prompts × ${maxTokens} tokens, shares ${shares.map((s) => `${s * 100}%`).join(" ")}, unseen ${novelN}-token contexts only` +
      (sampling ? `; ${samplingLabel(sampling)}` : ""),
  );

  const res = await evaluate(slm, llm, prompts, {
    shares,
    maxTokens,
    seed,
    index,
    routers: { confidence: new ConfidenceRouter(), learned, distilled },
    ...(sampling ? { sampling } : {}),
    detokenize: (t) => slm.detokenize(t),
    log,
  });

  const featureCost = await measureFeatureCost(slm, prompts[0]!.prompt);
  const title =
    `${slm.identity.name} → ${llm.identity.name} · ${what} · ${res.counted.teacherForced} teacher-forced positions` +
    (sampling ? ` · ${samplingLabel(sampling)}` : "");
  const costs = Object.entries(res.routerCostMs)
    .map(([n, ms]) => `${n} ${(ms * 1000).toFixed(1)} µs`)
    .join(", ");
  const text = [
    title,
    `disagreement rate (SLM greedy ≠ LLM greedy): ${(res.disagreementRate * 100).toFixed(1)}% · router cost per token: ${costs}`,
    `SLM step cost by feature: ${featureCost.map((c) => `${c.name} ${c.msPerStep.toFixed(2)} ms`).join(" · ")}`,
    "",
    summaryTable(res.summary, REQUIRED_SHARES.filter((s) => shares.includes(s)).length ? REQUIRED_SHARES : shares),
    "",
    sampling
      ? `all runs (τ calibrated teacher-forced; free-running: mean ±sd over ${sampling.seeds.length} seeds)`
      : "all runs (τ calibrated teacher-forced; free-running shares measured)",
    rowsTable(res.rows),
  ].join("\n");
  const out = path.resolve(
    a.out ?? path.join(repoRoot, "eval", "results", a.dataset ?? (a.text ? path.basename(a.text).replace(/\W+/g, "-") : "stories")),
  );
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "table.txt"), text + "\n");
  fs.writeFileSync(path.join(out, "results.csv"), toCsv(res.rows));
  fs.writeFileSync(path.join(out, "results.json"), JSON.stringify({ title, featureCost, ...res }, null, 1) + "\n");
  fs.writeFileSync(path.join(out, "plot.svg"), toSvg(res, title));
  log(text);
  log(`wrote ${out}/{table.txt,results.csv,results.json,plot.svg} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (a.json) console.log(jsonLine(res));
} finally {
  await slm.dispose();
  await llm.dispose();
}
