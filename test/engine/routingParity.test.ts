/**
 * The device's decoder and the cloud's replica of it (cloud/replica.ts) must give the router the same
 * features and reach the same decision at every step: the replica's stream is only usable where it
 * decides as the device does. Both call shared/routing.ts; this test fails if either builds the
 * features another way (a missing feature, another position) or decides differently.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SlmReplica } from "../../cloud/replica.js";
import { CollaborativeDecoder } from "../../electron/engine/decoder.js";
import type { TokenEvent } from "../../shared/events.js";
import type { FeatureNeeds, Router, RouterFeatures } from "../../shared/router.js";
import { getTandemLlama } from "../../inference/llama.js";
import { LocalModel } from "../../inference/localModel.js";
import { LearnedRouter } from "../../router/learnedRouter.js";
import { bindingOf } from "../../router/file.js";
import { initMlp } from "../../router/mlp.js";
import { randomQwenPair, storiesPair, type PairFiles } from "../helpers/pair.js";
import { hasStories } from "../helpers/shared.js";

const MAX = 24;

/** Scores with `inner`, recording every feature set it is given. */
class RecordingRouter implements Router {
  readonly seen: RouterFeatures[] = [];
  constructor(private readonly inner: Router) {}
  get name(): string {
    return this.inner.name;
  }
  get needs(): FeatureNeeds {
    return this.inner.needs;
  }
  score(f: RouterFeatures): number {
    this.seen.push(f);
    return this.inner.score(f);
  }
}

/** A feature set as plain values, exactly (same SLM file, same machine: the same numbers), with the kind of its hidden state. */
function shape(f: RouterFeatures) {
  return {
    keys: Object.keys(f)
      .filter((k) => f[k as keyof RouterFeatures] !== undefined)
      .sort(),
    top1Prob: f.top1Prob,
    topProbs: f.topProbs ? [...f.topProbs] : undefined,
    hidden: f.hidden ? { kind: f.hidden.constructor.name, values: Array.from(f.hidden) } : undefined,
    position: f.position,
  };
}

describe("the device and the cloud replica route alike", () => {
  let files: PairFiles;
  let device: LocalModel;
  let replica: SlmReplica;
  let router: Router;

  beforeAll(async () => {
    files = (hasStories ? await storiesPair() : null) ?? (await randomQwenPair());
    device = await LocalModel.load(files.slm, { contextSize: 512, hiddenState: true });
    replica = await SlmReplica.load(await getTandemLlama(), files.slm, { contextSize: 512, slots: 1 });
    // a router network on every feature: hidden state, top-1, margin and top-k entropy
    router = new LearnedRouter(
      initMlp([device.hiddenSize + 3, 8, 1], 7),
      { hidden: true, top1: true, dist: true, topK: 8 },
      bindingOf(device),
    );
  }, 120_000);
  afterAll(async () => {
    await replica?.dispose();
    await device?.dispose();
  });

  async function deviceAnswer(prompt: number[], r: Router, tau: number): Promise<TokenEvent[]> {
    const events: TokenEvent[] = [];
    await device.clear();
    for await (const e of new CollaborativeDecoder(device, r, null).generate(prompt, { tau, maxTokens: MAX })) events.push(e);
    return events;
  }

  it("same features and the same decision at every position of an answer", async () => {
    const prompt = device.tokenizeText("Once upon a time");
    const scores = (await deviceAnswer(prompt, router, 0)).map((e) => e.confidence).sort((a, b) => a - b);
    const tau = scores[Math.floor(scores.length / 2)]!; // about half the positions routed
    const onDevice = new RecordingRouter(router);
    // no cloud: routed positions keep the SLM's token (fallback), so the history is the SLM's
    const events = await deviceAnswer(prompt, onDevice, tau);
    expect(events.length).toBe(MAX);
    const onReplica = new RecordingRouter(router);
    const run = await replica.follow("parity", prompt, onReplica, tau);
    expect(run).not.toBeNull();
    try {
      for (const e of events) {
        const d = run!.decide(e.index);
        expect(d.tokenId, `SLM token at ${e.index}`).toBe(e.slmTokenId);
        expect(d.routes, `decision at ${e.index}`).toBe(e.origin !== "local");
        await run!.advance(e.tokenId);
      }
    } finally {
      run!.release();
    }
    expect(onReplica.seen.map(shape)).toEqual(onDevice.seen.map(shape));
    expect(onDevice.seen.every((f) => f.hidden && f.topProbs && f.topProbs.length >= 8 && Number.isFinite(f.top1Prob))).toBe(true);
    const routed = events.filter((e) => e.origin !== "local").length;
    expect(routed).toBeGreaterThan(0);
    expect(routed).toBeLessThan(MAX);
  });
});
