/**
 * npm run router:train -- [--labels FILE[,FILE...]] [--slm PATH] [--out-dir DIR] [--seed N]
 *                         [--epochs N] [--lr X] [--balance auto|on|off] [--target soft|hard]
 *                         [--sizes W1,W2,...]
 *
 * Trains the router MLP on label files (default: the SLM's file written by router:label) and writes
 * <out-dir>/<slm>.router.json (default router/trained/, where loadRouterFor looks).
 * --target soft (default): P_LLM(SLM token)/P_LLM(LLM token) as the target — routes where the SLM's
 * token costs the most log-probability; --target hard: CITER's 0/1 labels.
 * --sizes: the hidden layers' widths (default 2w,w with w = min(h, 64): ~0.1–0.4 ms a token at h = 896;
 * CITER's own 2h,h — 1792,896 on Qwen2.5-0.5B — costs +4–7 ms on a CPU: bench figure a).
 */
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { LocalModel } from "../../inference/localModel.js";
import { defaultLabelsFile, defaultPair } from "./args.js";
import { featureSpecName } from "../features.js";
import { mergeLabelSets, readLabelFile } from "./labelFile.js";
import { trainFromLabels } from "./pipeline.js";

const { values: a } = parseArgs({
  options: {
    labels: { type: "string" },
    slm: { type: "string" },
    "out-dir": { type: "string" },
    seed: { type: "string" },
    epochs: { type: "string" },
    lr: { type: "string" },
    balance: { type: "string" },
    target: { type: "string" },
    sizes: { type: "string" },
    quiet: { type: "boolean" },
  },
});

let files = a.labels?.split(",");
if (!files) {
  // the default label file is named after the SLM: load it (cheap) just for its identity
  const slm = await LocalModel.load(a.slm ?? (await defaultPair()).slm, { contextSize: 64 });
  files = [defaultLabelsFile(slm)];
  await slm.dispose();
}
for (const f of files) if (!fs.existsSync(f)) throw new Error(`Label file ${f} not found: run npm run router:label first`);
const set = files.map(readLabelFile).reduce(mergeLabelSets);
console.log(
  `training on ${set.y.length} positions from ${files.join(", ")} (features ${featureSpecName(set.features)}, SLM ${set.slm.name})`,
);
const widths = a.sizes?.split(",").map(Number);
if (widths && (widths.length === 0 || widths.some((w) => !Number.isInteger(w) || w < 1 || w > 8192)))
  throw new Error(`--sizes wants positive layer widths, e.g. 128,64 (got ${a.sizes})`);
const t0 = performance.now();
const { file, report } = trainFromLabels(set, {
  seed: Number(a.seed ?? 1),
  maxEpochs: a.epochs ? Number(a.epochs) : undefined,
  lr: a.lr ? Number(a.lr) : undefined,
  balance: a.balance === "on" ? true : a.balance === "off" ? false : "auto",
  outDir: a["out-dir"],
  target: a.target === "hard" ? "hard" : "soft",
  sizes: widths ? [set.d, ...widths, 1] : undefined,
  labelsFile: files.join(","),
  log: a.quiet ? undefined : (s) => console.log(s),
});
console.log(
  `best epoch ${report.bestEpoch}/${report.epochs} · val loss ${report.valLoss[report.bestEpoch - 1]!.toFixed(4)} · val AUC ${report.valAuc.toFixed(3)} · ` +
    `val accuracy ${(report.valAccuracy * 100).toFixed(1)}% · ${report.rows.train}/${report.rows.val} train/val rows · ` +
    `${report.balanced ? "class-balanced" : "unweighted"} · ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
console.log(`wrote ${file}`);
