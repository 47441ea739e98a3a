/**
 * npm run router:distill -- [--slm PATH] [--text FILE] [--sequences N] [--tokens N] [--out-dir DIR]
 *                           [--seed N] [--force]
 *
 * Makes the distilled confidence router for an SLM (router/training/distill.ts): the SLM alone, no LLM, no
 * labels. Collects (hidden state, top-1 probability) along `--sequences` prompts of the text (default:
 * the first 80% of ../shared/data/tinystories_sample_train.txt, which the eval does not use), each
 * teacher-forced for `--tokens` tokens and then continued greedily as long, trains the student, measures
 * how closely it routes like the confidence router on held-out sequences, and writes
 * <out-dir>/<slm>.distilled.router.json (default router/trained/, where loadRouterFor looks) when it
 * routes closely enough (or with --force).
 */
import * as path from "node:path";
import { parseArgs } from "node:util";
import { LocalModel } from "../../inference/localModel.js";
import { defaultPair } from "./args.js";
import { collectConfidenceSamples, distillRouter, MIN_OVERLAP_AT_10 } from "./distill.js";
import { bindingOf, describeFidelity, distilledRouterFileName, writeRouterFile } from "../file.js";
import { defaultRouterDir } from "../learnedRouter.js";
import { defaultTrainingTextPath, readText, samplePrompts, splitText } from "./text.js";

const { values: a } = parseArgs({
  options: {
    slm: { type: "string" },
    text: { type: "string" },
    sequences: { type: "string" },
    tokens: { type: "string" },
    "out-dir": { type: "string" },
    seed: { type: "string" },
    force: { type: "boolean" },
  },
});

const slmFile = a.slm ?? (await defaultPair()).slm;
const slm = await LocalModel.load(slmFile, { contextSize: 1024, hiddenState: true });
try {
  const seed = Number(a.seed ?? 1);
  const count = Number(a.sequences ?? 300);
  const tokens = Number(a.tokens ?? 40);
  const textFile = a.text ?? defaultTrainingTextPath();
  // without --text, only the training part of the stories sample: the eval's held-out text stays unseen
  const text = a.text ? readText(textFile) : splitText(readText(textFile), 0.8).train;
  const seqs = samplePrompts(text, (s) => slm.tokenizeText(s), count, tokens, seed);
  console.log(
    `distilling the confidence router of ${slm.identity.name}: ${seqs.length} sequences of ${path.basename(textFile)}, ${tokens} tokens read + ${tokens} generated each`,
  );
  let t = performance.now();
  const samples = await collectConfidenceSamples(slm, seqs, {
    from: Math.min(8, tokens - 1),
    generate: tokens,
    log: (s) => console.log(s),
  });
  console.log(`collected ${samples.size} positions in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  t = performance.now();
  const d = await distillRouter(slm, samples, { seed, source: `self-distilled on ${path.basename(textFile)}` });
  console.log(
    `trained ${d.router.name} in ${((performance.now() - t) / 1000).toFixed(1)} s (best epoch ${d.report.bestEpoch}/${d.report.epochs})`,
  );
  console.log(`fidelity: ${describeFidelity(d.fidelity)}`);
  if (!d.usable && !a.force) {
    console.log(
      `not written: at a 10% share it routes under ${MIN_OVERLAP_AT_10 * 100}% of the confidence router's positions (more --sequences help; --force writes it anyway)`,
    );
    process.exitCode = 3;
  } else {
    const file = path.join(a["out-dir"] ?? defaultRouterDir(), distilledRouterFileName(bindingOf(slm)));
    writeRouterFile(file, d.json);
    console.log(`wrote ${file}`);
  }
} finally {
  await slm.dispose();
}
