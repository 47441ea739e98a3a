/**
 * Issue 17 item 4 on a fresh install: the share a τ would give is known before the first answer. When
 * a model pair has no calibration yet, the engine scores a short local answer as soon as the model is
 * loaded (the SLM is otherwise idle then); an answer asked for meanwhile waits for it and is unchanged.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TandemService } from "../../electron/engine/service.js";
import type { BridgeEvent } from "../../shared/bridge.js";
import { presetConfig } from "../../shared/sampling.js";
import { storiesPair } from "../helpers/pair.js";

const pair = await storiesPair();
const services: TandemService[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function start(dataDir: string): Promise<TandemService> {
  const s = await TandemService.start({
    dataDir,
    slm: pair!.slm,
    cloud: { kind: "none", url: "", token: "" },
    tau: 0.5,
    maxTokens: 12,
    contextSize: 512,
    selfDistill: false,
    sampling: presetConfig("precise"),
  });
  services.push(s);
  return s;
}

async function calibrated(s: TandemService): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const n = (await s.cloudControl({})).calibration.scores;
    if (n > 0) return n;
    await sleep(50);
  }
  return 0;
}

afterEach(async () => {
  for (const s of services.splice(0)) await s.close();
});

describe.skipIf(!pair)("the share a τ would give, before the first answer (fresh install)", () => {
  it("is calibrated on a short local answer once the model loads, and kept across a restart", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-firstcal-"));
    const s = await start(dataDir);
    const events: BridgeEvent[] = [];
    s.subscribe((e) => events.push(e));
    const n = await calibrated(s);
    expect(n).toBeGreaterThan(8);
    const view = await s.cloudControl({});
    expect(view.calibration.shareAtTau).not.toBeNull();
    expect(view.calibration.shareAtTau!).toBeGreaterThanOrEqual(0);
    expect(view.calibration.shareAtTau!).toBeLessThanOrEqual(1);
    expect((await s.listConversations({})).length).toBe(0); // nothing of the user's was made for it
    await s.close();
    services.length = 0;
    const again = await start(dataDir);
    await sleep(300);
    expect((await again.cloudControl({})).calibration.scores).toBe(n); // not calibrated twice
  }, 60_000);

  it("an answer asked for while it calibrates waits for it and is the same answer", async () => {
    const answerOf = async (s: TandemService) => {
      const c = await s.createConversation({});
      const done = new Promise<BridgeEvent>((resolve) => {
        const off = s.subscribe((e) => {
          if (e.type === "answer-end" || e.type === "answer-error") {
            off();
            resolve(e);
          }
        });
      });
      await s.send({ requestId: "r1", conversationId: c.id, text: "Once upon a time" });
      const end = await done;
      expect(end.type).toBe("answer-end");
      return (await s.getConversation({ id: c.id })).messages[1].tokens!.map((t) => t.tokenId);
    };
    const fresh = await start(mkdtempSync(path.join(tmpdir(), "tandem-firstcal-")));
    const during = await answerOf(fresh); // sent at once: the calibration may still be running
    const settled = await start(mkdtempSync(path.join(tmpdir(), "tandem-firstcal-")));
    await calibrated(settled);
    expect(await answerOf(settled)).toEqual(during);
  }, 60_000);
});
