/**
 * The engine service's sampling, over the real engine (the stories260K pair) and a real cloud token
 * server: each answer is sampled with its conversation's settings and a seed of its own (stored with
 * the answer and in its summary), so Regenerate gives a different answer, and a stored seed reproduces
 * an answer token for token, origins included.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import type { BridgeEvent, StoredMessage } from "../../shared/bridge.js";
import { presetConfig, SAMPLING_PRESETS } from "../../shared/sampling.js";
import { TandemService } from "../../electron/engine/service.js";
import { storiesPair } from "../helpers/pair.js";
import { noteMissingShared } from "../helpers/shared.js";

const pair = await storiesPair();
noteMissingShared("the service's sampling");

describe.skipIf(!pair)("the service samples each answer with its conversation's settings", () => {
  let server: CloudServer;
  let service: TandemService;
  const token = randomBytes(12).toString("hex");

  beforeAll(async () => {
    server = await startCloudServer({ modelPath: pair!.llm, host: "127.0.0.1", port: 0, token, log: () => {} });
    service = await TandemService.start({
      dataDir: mkdtempSync(path.join(tmpdir(), "tandem-sampling-")),
      slm: pair!.slm,
      cloud: { kind: "tandem", url: server.url, token },
      tau: 0.5,
      maxTokens: 32,
      contextSize: 512,
      selfDistill: false, // the router must not change between the answers compared
    });
  }, 120_000);
  afterAll(async () => {
    await service?.close();
    await server?.close();
  });

  const ended = (requestId: string) =>
    new Promise<BridgeEvent>((resolve) => {
      const off = service.subscribe((e) => {
        if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === requestId) {
          off();
          resolve(e);
        }
      });
    });
  const lastAnswer = async (conversationId: string): Promise<StoredMessage> =>
    (await service.getConversation({ id: conversationId })).messages.at(-1)!;
  const view = (m: StoredMessage) => m.tokens!.map((t) => `${t.tokenId}:${t.origin}`);
  let n = 0;
  const regenerate = async (conversationId: string) => {
    const requestId = `r${n++}`;
    const done = ended(requestId);
    await service.regenerate({ requestId, conversationId });
    expect((await done).type).toBe("answer-end");
    return lastAnswer(conversationId);
  };

  it("a new seed per answer (Regenerate differs); the seed and settings are stored and in the summary; a stored seed reproduces the answer", async () => {
    const c = await service.createConversation({});
    await service.setSampling({ conversationId: c.id, sampling: presetConfig("balanced") });
    const done = ended("first");
    await service.send({ requestId: "first", conversationId: c.id, text: "Once upon a time" });
    expect((await done).type).toBe("answer-end");
    const first = await lastAnswer(c.id);
    expect(first.sampling).toEqual({ ...SAMPLING_PRESETS.balanced, seed: first.sampling!.seed });
    expect(first.summary!.sampling).toEqual(first.sampling);
    expect(first.tokens!.some((t) => t.origin === "cloud") && first.tokens!.some((t) => t.origin === "local")).toBe(true);
    const again = await regenerate(c.id);
    expect(again.sampling!.seed).not.toBe(first.sampling!.seed);
    expect(view(again)).not.toEqual(view(first));
    // the first answer's stored settings, seed included, give it back token for token
    await service.setSampling({ conversationId: c.id, sampling: { ...first.sampling!, preset: "custom" } });
    const reproduced = await regenerate(c.id);
    expect(reproduced.sampling).toEqual(first.sampling);
    expect(view(reproduced)).toEqual(view(first));
    expect(reproduced.content).toBe(first.content);
  }, 180_000);
});
