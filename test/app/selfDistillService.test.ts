/**
 * The app learns its distilled router from the user's answers (electron/engine/selfDistill.ts): with no
 * router file for the SLM it routes with the confidence router, trains the student between answers once
 * enough is collected, switches to it, says so, and a restart loads it from the data folder.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { BridgeEvent } from "../../shared/bridge.js";
import { TandemService } from "../../electron/engine/service.js";
import { storiesPair } from "../helpers/pair.js";
import { noteMissingShared } from "../helpers/shared.js";

const pair = await storiesPair();
noteMissingShared("the app's self-distilled router");

describe.skipIf(!pair)("self-distilled router in the app (real stories260K SLM, offline)", () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-distill-svc-"));
  // an empty repo router dir: the committed stories router must not be found first
  process.env.TANDEM_ROUTER_DIR = path.join(dataDir, "no-repo-routers");
  afterAll(() => {
    delete process.env.TANDEM_ROUTER_DIR;
    rmSync(dataDir, { recursive: true, force: true });
  });
  const start = (selfDistill: { minSamples: number; minAnswers: number; minOverlap: number }) =>
    TandemService.start({ dataDir, slm: pair!.slm, tau: 0.3, maxTokens: 40, contextSize: 512, selfDistill });

  it("routes with the confidence router while it learns, then switches to the student and keeps it", async () => {
    const service = await start({ minSamples: 150, minAnswers: 4, minOverlap: 0 });
    const events: BridgeEvent[] = [];
    service.subscribe((e) => events.push(e));
    try {
      expect((await service.snapshot()).models.router).toMatch(/^confidence .*learning to predict it/);
      const c = await service.createConversation({});
      const prompts = ["Once upon a time", "The little dog", "Lily went to the park", "Tom had a red ball", "One day the sun"];
      for (const [i, text] of prompts.entries()) {
        const done = new Promise<void>((resolve) => {
          const off = service.subscribe((e) => {
            if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === `d${i}`) {
              off();
              resolve();
            }
          });
        });
        await service.send({ requestId: `d${i}`, conversationId: c.id, text });
        await done;
      }
      // training runs between answers, in slices: wait for the switch
      const deadline = Date.now() + 60_000;
      while (!(await service.snapshot()).models.router.startsWith("distilled") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      const router = (await service.snapshot()).models.router;
      expect(router).toMatch(/^distilled confidence \(MLP 64→128→64→1 on hidden/);
      expect(
        events.some((e) => e.type === "notice" && /reads the SLM's hidden state instead of sorting its vocabulary/.test(e.message)),
      ).toBe(true);
      expect(events.some((e) => e.type === "models" && e.models.router === router)).toBe(true);
      const files = readdirSync(path.join(dataDir, "routers"));
      expect(files).toEqual([expect.stringMatching(/\.distilled\.router\.json$/)]);
      // the next answer runs with the student (it scores without the top-1 probability)
      await service.send({ requestId: "after", conversationId: c.id, text: "A bird sang" });
      await new Promise<void>((resolve) =>
        service.subscribe((e) => (e.type === "answer-end" && e.requestId === "after" ? resolve() : undefined)),
      );
    } finally {
      await service.close();
    }
    const again = await start({ minSamples: 150, minAnswers: 4, minOverlap: 0 });
    try {
      expect((await again.snapshot()).models.router).toMatch(/^distilled confidence/);
    } finally {
      await again.close();
    }
    expect(existsSync(path.join(dataDir, "routers"))).toBe(true);
  }, 180_000);
});
