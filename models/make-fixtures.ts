/**
 * CLI: generate the test fixtures (and optionally the benchmark-shape models) and print them.
 *
 *   npx tsx models/make-fixtures.ts [--out DIR] [--shared DIR] [--bench[=slm|llm]] [--force] [--verify]
 *
 *   --out DIR      output directory (default: $TANDEM_FIXTURES_DIR or models/.fixtures)
 *   --shared DIR   directory holding models/stories260K.gguf (default: $TANDEM_SHARED_DIR or ../shared)
 *   --bench        also make the Qwen2.5-0.5B- and 1.5B-shaped random Q8_0 models (~0.7 + ~2 GB, minutes)
 *   --bench=slm    only the 0.5B shape (or =llm for the 1.5B shape)
 *   --force        regenerate even what is up to date
 *   --verify       load every model with node-llama-cpp (CPU) and print a few greedy tokens
 *
 * Exit code 1 on any failure (including a model that fails to load with --verify).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { ensureBenchFixtures, ensureFixtures, formatBytes, type MadeFile } from "./fixtures.js";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      shared: { type: "string" },
      bench: { type: "string" },
      force: { type: "boolean", default: false },
      verify: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    // `--bench` alone is allowed: rewrite it to --bench=all below.
    args: process.argv.slice(2).map((a) => (a === "--bench" ? "--bench=all" : a)),
    strict: true,
  });
  if (values.help) {
    const src = fs.readFileSync(new URL(import.meta.url), "utf8");
    console.log(src.slice(src.indexOf("/**") + 4, src.indexOf("*/")).replace(/^ \* ?/gm, ""));
    return;
  }
  const bench = values.bench;
  if (bench !== undefined && !["all", "slm", "llm"].includes(bench)) throw new Error(`--bench takes slm or llm, not "${bench}"`);

  const log = (line: string) => console.log(`  ${line}`);
  const common = { dir: values.out, sharedDir: values.shared, force: values.force, log };
  const t0 = performance.now();
  const fx = await ensureFixtures(common);
  const models: Array<[string, string | null]> = [
    ["storiesLlm", fx.storiesLlm],
    ["storiesSlm", fx.storiesSlm],
    ["randA", fx.randA],
    ["randB", fx.randB],
    ["randGpt2", fx.randGpt2],
  ];
  const made: MadeFile[] = [...fx.made];
  if (bench) {
    const b = await ensureBenchFixtures({ ...common, which: bench === "all" ? ["slm", "llm"] : [bench as "slm" | "llm"] });
    made.push(...b.made);
    if (b.slm) models.push(["benchSlm", b.slm]);
    if (b.llm) models.push(["benchLlm", b.llm]);
  }
  const totalMs = performance.now() - t0;

  console.log(`\nfixtures in ${fx.dir}`);
  const rows: Array<[string, string | null]> = [
    ...models,
    ["corrupt", fx.corrupt],
    ["notModel", fx.notModel],
    ["vocab.qwen2", fx.vocab.qwen2],
    ["vocab.gpt2", fx.vocab.gpt2],
  ];
  for (const [name, p] of rows) {
    const m = made.find((x) => x.path === p);
    const size = p ? formatBytes(fs.statSync(p).size) : "-";
    const status = !p ? `unavailable: ${fx.sharedMissingReason}` : m ? `made in ${(m.ms / 1000).toFixed(1)} s` : "up to date";
    console.log(`  ${name.padEnd(12)} ${(p ? path.basename(p) : "-").padEnd(38)} ${size.padStart(10)}  ${status}`);
  }
  console.log(`${made.length} file(s) made in ${(totalMs / 1000).toFixed(1)} s`);

  if (values.verify) {
    const { smokeTestModel } = await import("./smoke.js");
    console.log("\nverifying with node-llama-cpp (CPU, 1 thread):");
    for (const [name, p] of models) {
      if (!p) continue;
      const r = await smokeTestModel(p, { steps: 12 });
      const conf = r.confidences.map((c) => c.toFixed(2)).join(" ");
      console.log(
        `  ${name.padEnd(12)} vocab ${r.vocabSize}, ${r.msPerToken.toFixed(1)} ms/token, chat wrapper ${r.chatWrapper}: ` +
          `${JSON.stringify(r.text.slice(0, 80))}\n${" ".repeat(15)}top-1 p: ${conf}`,
      );
    }
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? `error: ${e.message}` : e);
  process.exit(1);
});
