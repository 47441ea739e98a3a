/** Shared command-line bits of the router scripts: model defaults (the stories260K fixture pair). */
import * as path from "node:path";
import { ensureFixtures } from "../../models/fixtures.js";
import { bindingOf, routerFileName } from "../file.js";
import type { LocalModel } from "../../inference/localModel.js";

export async function defaultPair(slm?: string, llm?: string): Promise<{ slm: string; llm: string }> {
  if (slm && llm) return { slm, llm };
  const f = await ensureFixtures();
  if (!f.storiesSlm || !f.storiesLlm)
    throw new Error(`No --slm/--llm given and the stories260K pair is unavailable: ${f.sharedMissingReason}`);
  return { slm: slm ?? f.storiesSlm, llm: llm ?? f.storiesLlm };
}

/** Default label file of an SLM: router/.data/<slug>.labels.json (git-ignored data, not a product file). */
export function defaultLabelsFile(slm: LocalModel): string {
  return path.join(
    path.dirname(new URL(import.meta.url).pathname),
    "..",
    ".data",
    routerFileName(bindingOf(slm)).replace(/\.router\.json$/, ".labels.json"),
  );
}
