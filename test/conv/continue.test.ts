/**
 * Continue: an answer cut off at the token limit goes on in the same message, exactly as one longer
 * answer would have gone (real inference, τ = 0, sampled at Balanced with a fixed seed: the draws are
 * keyed by position, so the continued part draws what the longer answer drew there).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TandemService } from "../../electron/engine/service.js";
import type { BridgeEvent } from "../../shared/bridge.js";
import { storiesPair } from "../helpers/pair.js";
import { presetConfig } from "../../shared/sampling.js";

const pair = await storiesPair();
const services: TandemService[] = [];

async function start(maxTokens: number, dataDir = mkdtempSync(path.join(tmpdir(), "tandem-continue-"))) {
  const s = await TandemService.start({
    dataDir,
    slm: pair!.slm,
    cloud: { kind: "none", url: "", token: "" },
    tau: 0,
    maxTokens,
    contextSize: 512,
    selfDistill: false,
    sampling: presetConfig("balanced", 77),
  });
  services.push(s);
  return s;
}

async function answer(s: TandemService, run: () => Promise<unknown>): Promise<BridgeEvent> {
  const done = new Promise<BridgeEvent>((resolve) => {
    const off = s.subscribe((e) => {
      if (e.type === "answer-end" || e.type === "answer-error") {
        off();
        resolve(e);
      }
    });
  });
  await run();
  return done;
}

afterEach(async () => {
  for (const s of services.splice(0)) await s.close();
});

describe.skipIf(!pair)("Continue after the token limit (real inference)", () => {
  it("the same message goes on as one longer answer would, and survives a restart", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-continue-"));
    const short = await start(8, dataDir);
    const c = await short.createConversation({});
    await answer(short, () => short.send({ requestId: "s1", conversationId: c.id, text: "Once upon a time" }));
    let msg = (await short.getConversation({ id: c.id })).messages[1];
    expect(msg.summary?.stopReason).toBe("max-tokens");
    const end = await answer(short, () => short.continueAnswer({ requestId: "s2", conversationId: c.id }));
    expect(end.type).toBe("answer-end");
    const conv = await short.getConversation({ id: c.id });
    expect(conv.messages.length).toBe(2);
    msg = conv.messages[1];
    expect(msg.tokens!.map((t) => t.index)).toEqual(msg.tokens!.map((_, i) => i));
    expect(msg.tokens!.length).toBe(16);
    expect(msg.summary).toMatchObject({ tokens: 16, text: msg.content });
    expect(msg.content).toBe(msg.tokens!.map((t) => t.text).join(""));

    const long = await start(16);
    const c2 = await long.createConversation({});
    await answer(long, () => long.send({ requestId: "l1", conversationId: c2.id, text: "Once upon a time" }));
    const whole = (await long.getConversation({ id: c2.id })).messages[1];
    expect(msg.tokens!.map((t) => t.tokenId)).toEqual(whole.tokens!.map((t) => t.tokenId));

    // not after an answer that ended by itself or was stopped: refused, nothing changed
    await short.close();
    const again = await start(8, dataDir);
    expect(await again.getConversation({ id: c.id })).toEqual(conv);
    const c3 = await again.createConversation({});
    await expect(again.continueAnswer({ requestId: "x", conversationId: c3.id })).rejects.toThrow(/token limit can be continued/);
  }, 120_000);
});
