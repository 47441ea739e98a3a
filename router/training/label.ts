/**
 * npm run router:label -- [--slm PATH] [--llm PATH] [--text FILE] [--prompts N] [--continuation N]
 *                         [--features hidden,top1,dist] [--iteration 2] [--out FILE] [--seed N]
 *                         [--dataset csqa-train --limit N [--gold]]
 *
 * Writes CITER labels for the SLM/LLM pair (default: the stories260K fixture pair, text from
 * ../shared/data/tinystories_sample_train.txt — its first 80%; the rest is the evaluation's held-out text).
 * --iteration 2 adds labels on trajectories routed by the current learned router (CITER's second
 * iteration; train one first).
 * --dataset labels benchmark questions (chat template) instead: references are the LLM's greedy answers,
 * or with --gold the dataset's answers (then "both differ" positions are settled by SLM rollouts checked
 * against the answer key — CITER's rule).
 */
import { parseArgs } from "node:util";
import { LocalModel } from "../../inference/localModel.js";
import { defaultLabelsFile, defaultPair } from "./args.js";
import { parseFeatureSpec } from "../features.js";
import { writeLabelFile } from "./labelFile.js";
import { loadRouterFor, LearnedRouter } from "../learnedRouter.js";
import { buildLabels, DEFAULT_LABEL_OPTIONS } from "./pipeline.js";
import { defaultTrainingTextPath, readText } from "./text.js";
import { loadDataset } from "./datasets.js";

const { values: a } = parseArgs({
  options: {
    slm: { type: "string" },
    llm: { type: "string" },
    text: { type: "string" },
    prompts: { type: "string" },
    "prompt-tokens": { type: "string" },
    continuation: { type: "string" },
    features: { type: "string" },
    iteration: { type: "string" },
    "routed-shares": { type: "string" },
    router: { type: "string" },
    out: { type: "string" },
    seed: { type: "string" },
    dataset: { type: "string" },
    limit: { type: "string" },
    gold: { type: "boolean" },
  },
});

const t0 = performance.now();
const pair = await defaultPair(a.slm, a.llm);
const slm = await LocalModel.load(pair.slm, { contextSize: 1024, hiddenState: true });
const llm = await LocalModel.load(pair.llm, { contextSize: 1024 });
try {
  if (slm.identity.vocabHash !== llm.identity.vocabHash)
    throw new Error(`${slm.identity.name} and ${llm.identity.name} do not share a vocabulary`);
  let routed;
  if (a.iteration === "2") {
    const choice = loadRouterFor(slm, { file: a.router });
    if (choice.kind !== "learned" || !(choice.router instanceof LearnedRouter))
      throw new Error(
        `--iteration 2 needs a trained router for ${slm.identity.name} (${choice.description}); run npm run router:train first`,
      );
    const shares = (a["routed-shares"] ?? "0.05,0.1,0.2").split(",").map(Number);
    routed = { router: choice.router, shares, prompts: Number(a.prompts ?? DEFAULT_LABEL_OPTIONS.prompts) };
  }
  let items;
  if (a.dataset) {
    const { dataset, items: rows } = loadDataset(a.dataset, Number(a.limit ?? 500));
    items = rows.map((it) => {
      const prompt = slm.promptFromMessages([{ role: "user", content: it.message }]);
      return a.gold
        ? { prompt, reference: slm.model.tokenize(it.reference ?? "", false), check: (t: number[]) => it.check(slm.detokenize(t)) }
        : { prompt, check: (t: number[]) => it.check(slm.detokenize(t)) };
    });
    console.log(`labelling ${dataset.name}: ${items.length} questions${a.gold ? " against the gold answers" : ""}`);
  }
  const set = await buildLabels(slm, llm, {
    items,
    ...DEFAULT_LABEL_OPTIONS,
    text: readText(a.text ?? defaultTrainingTextPath()),
    prompts: Number(a.prompts ?? DEFAULT_LABEL_OPTIONS.prompts),
    promptTokens: Number(a["prompt-tokens"] ?? DEFAULT_LABEL_OPTIONS.promptTokens),
    continuationTokens: Number(a.continuation ?? (a.dataset ? 32 : DEFAULT_LABEL_OPTIONS.continuationTokens)),
    features: a.features ? parseFeatureSpec(a.features) : DEFAULT_LABEL_OPTIONS.features,
    seed: Number(a.seed ?? DEFAULT_LABEL_OPTIONS.seed),
    routed,
    log: (s) => console.log(s),
  });
  const out = a.out ?? defaultLabelsFile(slm);
  writeLabelFile(out, set);
  const rules = set.rules.reduce<Record<string, number>>((m, r) => ((m[r] = (m[r] ?? 0) + 1), m), {});
  console.log(`rules: ${JSON.stringify(rules)}`);
  console.log(`wrote ${out} (${set.y.length} positions) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} finally {
  await slm.dispose();
  await llm.dispose();
}
