/**
 * On-demand candidates for one token of a stored answer (the inspector's pinned token): the position
 * is re-evaluated with the real SLM (stories260K, one thread). Its top candidate is the SLM's own
 * greedy token there, and the candidates match the ones the decoder collects while answering.
 */
import { presetConfig } from "../../shared/sampling.js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeEvent, StoredMessage } from "../../shared/bridge.js";
import { TandemService } from "../../electron/engine/service.js";
import { storiesPair } from "../helpers/pair.js";
import { noteMissingShared } from "../helpers/shared.js";

const pair = await storiesPair();
noteMissingShared("on-demand candidates");

describe.skipIf(!pair)("candidates on demand", () => {
  let service: TandemService;
  let answer: StoredMessage;
  let conversationId: string;

  beforeAll(async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-cand-"));
    service = await TandemService.start({
      dataDir,
      slm: pair!.slm,
      cloud: { kind: "none", url: "", token: "" },
      tau: 0,
      maxTokens: 24,
      contextSize: 512,
      topK: 5,
      sampling: presetConfig("precise"), // greedy: the SLM's token is its top candidate
    });
    const conv = await service.createConversation({});
    conversationId = conv.id;
    const end = new Promise<StoredMessage>((resolve) => {
      const off = service.subscribe((e: BridgeEvent) => {
        if (e.type === "answer-end") {
          off();
          resolve(e.message);
        }
      });
    });
    await service.send({ requestId: "r1", conversationId, text: "Once upon a time" });
    answer = await end;
  }, 120_000);

  afterAll(async () => {
    await service?.close();
  });

  it("the top candidate at each position is the SLM's own token, with the decoder's probabilities", async () => {
    expect(answer.tokens!.length).toBeGreaterThan(5);
    for (const index of [0, 3, answer.tokens!.length - 1]) {
      const t = answer.tokens![index];
      const { candidates } = await service.candidates({ conversationId, messageId: answer.id, index });
      expect(candidates.length).toBeGreaterThan(1);
      expect(candidates[0].tokenId).toBe(t.slmTokenId);
      // the same distribution the decoder saw while answering
      expect(candidates[0].prob).toBeCloseTo(t.slmTop![0].prob, 4);
      expect(candidates.map((c) => c.tokenId).slice(0, 3)).toEqual(t.slmTop!.map((c) => c.tokenId).slice(0, 3));
    }
  });

  it("candidate texts keep their leading space (detokenised in context)", async () => {
    const index = answer.tokens!.findIndex((t) => t.text.startsWith(" "));
    expect(index).toBeGreaterThan(-1);
    const { candidates } = await service.candidates({ conversationId, messageId: answer.id, index });
    const own = candidates.find((c) => c.tokenId === answer.tokens![index].slmTokenId)!;
    expect(own.text).toBe(answer.tokens![index].text);
  });

  it("a position outside the answer or an unknown message is a clear error", async () => {
    await expect(service.candidates({ conversationId, messageId: answer.id, index: 9999 })).rejects.toThrow(/No token #9999/);
    await expect(service.candidates({ conversationId, messageId: "nope", index: 0 })).rejects.toThrow(/No such answer/);
  });
});
