/**
 * Labels, the local pair runner and the learned router in the engine, with real inference on the
 * stories260K-derived pair (skipped, saying why, when ../shared is absent).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import { LocalModel } from "../../inference/localModel.js";
import { collectRouted, collectTeacherForced, newLabelSet } from "../../router/training/collect.js";
import { parseFeatureSpec } from "../../router/features.js";
import { LearnedRouter, loadRouterFor } from "../../router/learnedRouter.js";
import { runRouted } from "../../router/training/pair.js";
import { trainFromLabels } from "../../router/training/pipeline.js";
import { hasStories, noteMissingShared } from "../helpers/shared.js";
import { startPair, storiesPair, type RunningPair } from "../helpers/pair.js";
import { standaloneGreedy, teacherForcedGreedy } from "../helpers/standalone.js";

noteMissingShared("router labels and learned-router engine tests");

describe.skipIf(!hasStories)("learned router on the stories260K pair (real inference)", () => {
  let slm: LocalModel;
  let llm: LocalModel;
  let files: { slm: string; llm: string };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tandem-router-real-"));
  const prompts = ["once upon a time, there was a", "the little dog ran to the", "one day, lily went to the park"];

  beforeAll(async () => {
    files = (await storiesPair())!;
    slm = await LocalModel.load(files.slm, { contextSize: 512, hiddenState: true });
    llm = await LocalModel.load(files.llm, { contextSize: 512 });
  });
  afterAll(async () => {
    await slm?.dispose();
    await llm?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("labels = (SLM greedy == LLM greedy) along the LLM's own greedy continuation, checked against standalone decoding", async () => {
    const set = newLabelSet(slm, llm, parseFeatureSpec("hidden,top1,dist"));
    const items = prompts.map((p) => ({ prompt: slm.tokenizeText(p) }));
    await collectTeacherForced(set, slm, llm, items, { continuationTokens: 16 });
    expect(set.y.length).toBe(3 * 16);
    let row = 0;
    for (const it of items) {
      const ref = await standaloneGreedy(files.llm, it.prompt, 16); // node-llama-cpp's own generation
      const seq = [...it.prompt, ...ref];
      const slmPreds = await teacherForcedGreedy(files.slm, seq, it.prompt.length);
      for (let j = 0; j < ref.length; j++, row++) expect(set.y[row]).toBe(slmPreds[j] === ref[j] ? 1 : 0);
    }
    const pos = set.y.filter((y) => y === 1).length;
    expect(pos).toBeGreaterThan(0); // the pair agrees somewhere…
    expect(pos).toBeLessThan(set.y.length); // …and disagrees somewhere
    const v = set.X[0] as Float32Array;
    expect(v.length).toBe(64 + 3);
    expect(v.slice(0, 64).some((x) => x !== 0)).toBe(true);
    expect(v[64]).toBeGreaterThan(0);
    expect(v[64]).toBeLessThanOrEqual(1);
  });

  it("given references: SLM rollouts settle positions where both models miss (rule 3)", async () => {
    const set = newLabelSet(slm, llm, parseFeatureSpec("hidden,top1"));
    const prompt = slm.tokenizeText("the little dog ran to the");
    const reference = slm.tokenizeText(" moon and sang a happy song").slice(1); // a reference neither model predicts everywhere
    const target = slm.tokenizeText(" park").at(-1)!;
    const check = (answer: number[]) => answer.includes(target); // "correct" = the answer mentions the park
    await collectTeacherForced(set, slm, llm, [{ prompt, reference, check }], { continuationTokens: 0, rolloutTokens: 12 });
    expect(set.y.length).toBe(reference.length);
    const seq = [...prompt, ...reference];
    const slmPreds = await teacherForcedGreedy(files.slm, seq, prompt.length);
    const llmPreds = await teacherForcedGreedy(files.llm, seq, prompt.length);
    let rollouts = 0;
    for (let j = 0; j < reference.length; j++) {
      if (slmPreds[j] === reference[j]) expect([set.rules[j], set.y[j]]).toEqual(["slm-matches", 1]);
      else if (llmPreds[j] === reference[j]) expect([set.rules[j], set.y[j]]).toEqual(["llm-matches", 0]);
      else {
        rollouts++;
        expect(set.rules[j]).toBe("rollout");
        // independently: the answer so far, the SLM's token, then the SLM alone for 12 tokens
        const prefix = [...seq.slice(0, prompt.length + j), slmPreds[j]!];
        const cont = await standaloneGreedy(files.slm, prefix, 12);
        expect(set.y[j]).toBe(check([...reference.slice(0, j), slmPreds[j]!, ...cont]) ? 1 : 0);
      }
    }
    expect(rollouts).toBeGreaterThan(0);
  });

  it("labels on routed trajectories (CITER iteration 2) follow the states the routed decoder visits", async () => {
    const spec = parseFeatureSpec("hidden,top1");
    const never = { name: "never", needs: { top1Prob: true, topK: 0, hidden: false }, score: () => 0.9 };
    const set = newLabelSet(slm, llm, spec);
    const prompt = slm.tokenizeText(prompts[2]!);
    await collectRouted(set, slm, llm, [prompt], never, 0.5, { maxTokens: 20 });
    // never routed: the trajectory is the SLM's own greedy answer…
    const traj = await standaloneGreedy(files.slm, prompt, 20);
    expect(set.sequences[0]).toEqual([...prompt, ...traj]);
    // …and each state is labelled by whether the LLM, there, would have chosen the same token
    const llmThere = await teacherForcedGreedy(files.llm, [...prompt, ...traj], prompt.length);
    traj.forEach((t, j) => expect(set.y[j]).toBe(llmThere[j] === t ? 1 : 0));
    expect(set.sources.every((x) => x === "routed")).toBe(true);
    // soft targets: 1 where the models agree, below 1 where the LLM prefers its own token
    set.y.forEach((y, j) => (y ? expect(set.soft[j]).toBe(1) : expect(set.soft[j]).toBeLessThan(1)));
    expect(set.y.some((y) => y === 0)).toBe(true);
  });

  it("routed decoding with both models local: never routing = SLM greedy, always routing = LLM greedy", async () => {
    const prompt = slm.tokenizeText(prompts[0]!);
    const needs = { top1Prob: true, topK: 0, hidden: true };
    const none = await runRouted(slm, llm, prompt, () => false, { maxTokens: 20, slmNeeds: needs, score: true });
    const all = await runRouted(slm, llm, prompt, () => true, { maxTokens: 20, slmNeeds: needs, score: true });
    expect(none.map((s) => s.chosen)).toEqual(await standaloneGreedy(files.slm, prompt, 20));
    expect(all.map((s) => s.chosen)).toEqual(await standaloneGreedy(files.llm, prompt, 20));
    // the LLM scores its own greedy tokens higher than the SLM's
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(all.map((s) => s.llmLogprob))).toBeGreaterThan(mean(none.map((s) => s.llmLogprob)));
  });

  describe("in the engine, with a real cloud server", () => {
    let pair: RunningPair;
    let router: LearnedRouter;
    beforeAll(async () => {
      const set = newLabelSet(slm, llm, parseFeatureSpec("hidden,top1,dist"));
      await collectTeacherForced(
        set,
        slm,
        llm,
        prompts.map((p) => ({ prompt: slm.tokenizeText(p) })),
        { continuationTokens: 24 },
      );
      trainFromLabels(set, { seed: 1, maxEpochs: 5, outDir: dir });
      const choice = loadRouterFor(slm, { dir });
      expect(choice.kind).toBe("learned");
      router = choice.router as LearnedRouter;
      pair = await startPair({ name: "stories", ...files }, { hiddenState: true });
    });
    afterAll(async () => {
      await pair?.close();
    });

    it("loadRouterFor picks the matching learned router for the SLM and the confidence router for the LLM", async () => {
      expect(loadRouterFor(slm, { dir }).description).toMatch(/^router: learned \(MLP 67→128→64→1/);
      expect(loadRouterFor(llm, { dir }).kind).toBe("confidence"); // same vocabulary and hidden size, another network
    });

    it("every token is the greedy choice of the model its origin names", async () => {
      const decoder = new CollaborativeDecoder(pair.slm, LearnedRouter.load(router.file!, pair.slm), await pair.client());
      const prompt = pair.slm.tokenizeText(prompts[1]!);
      // τ = the median confidence along the SLM's own answer: the routed answer follows that answer up
      // to its first low-confidence position, so it has cloud tokens (and, with 24 tokens, local ones)
      const local = [];
      for await (const e of decoder.generate(prompt, { tau: 0, maxTokens: 24 })) local.push(e.confidence);
      const tau = [...local].sort((a, b) => a - b)[Math.floor(local.length / 2)]!;
      const events = [];
      const answer = decoder.generate(prompt, { tau, maxTokens: 24 });
      for await (const e of answer) events.push(e);
      const summary = await answer.summary;
      expect(summary.router).toMatch(/^learned/);
      const tokens = events.map((e) => e.tokenId);
      const seq = [...prompt, ...tokens];
      const slmPreds = await teacherForcedGreedy(files.slm, seq, prompt.length);
      const llmPreds = await teacherForcedGreedy(files.llm, seq, prompt.length);
      events.forEach((e, i) => {
        expect(e.confidence).toBeGreaterThanOrEqual(0);
        expect(e.confidence).toBeLessThan(1);
        expect(e.origin === "cloud").toBe(e.confidence < tau);
        expect(e.tokenId).toBe(e.origin === "cloud" ? llmPreds[i] : slmPreds[i]);
      });
      expect(new Set(events.map((e) => e.confidence)).size).toBeGreaterThan(3); // a real score, not a constant
      expect(events.some((e) => e.origin === "cloud")).toBe(true);
      expect(events.some((e) => e.origin === "local")).toBe(true);
      // the hidden-state router verifies continuations one token at a time (llama.cpp exposes the hidden
      // state of a decode's last row only): the same answer as asking for every routed token
      const blocking = [];
      for await (const e of decoder.generate(prompt, { tau, maxTokens: 24, speculate: 0, draft: 0 })) blocking.push(e);
      expect(blocking.map((e) => `${e.tokenId}:${e.origin}`)).toEqual(events.map((e) => `${e.tokenId}:${e.origin}`));
      expect(events.some((e) => e.cloud?.fromDraft)).toBe(true);
    });
  });
});
