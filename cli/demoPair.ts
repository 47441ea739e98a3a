/**
 * The demo pair: a real small/large pair that shares one vocabulary, derived at run time from
 * ../shared/models/stories260K.gguf (the LLM is the model; the SLM the same network with a block
 * removed). Nothing is downloaded.
 */
import { ensureFixtures } from "../models/fixtures.js";

export async function demoPair(): Promise<{ slm: string; llm: string }> {
  const f = await ensureFixtures();
  if (!f.storiesSlm || !f.storiesLlm) {
    throw new Error(`The demo needs ../shared/models/stories260K.gguf: ${f.sharedMissingReason ?? "not found"}`);
  }
  return { slm: f.storiesSlm, llm: f.storiesLlm };
}
