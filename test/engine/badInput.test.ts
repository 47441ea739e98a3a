/** Bad input gets a clear error before any token: mismatched vocabularies, corrupt or non-GGUF files. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { VocabularyMismatchError } from "../../inference/modelFile.js";
import { ModelFileError } from "../../inference/modelPreflight.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { LocalModel } from "../../inference/localModel.js";

const TOKEN = "bad-input-test-token-0123";

describe("bad models", () => {
  let f: Awaited<ReturnType<typeof ensureFixtures>>;
  let server: CloudServer;
  beforeAll(async () => {
    f = await ensureFixtures();
    server = await startCloudServer({ modelPath: f.randB, host: "127.0.0.1", port: 0, token: TOKEN });
  });
  afterAll(async () => server?.close());

  it("a vocabulary mismatch is refused at session creation, naming both models", async () => {
    const slm = await LocalModel.load(f.randGpt2, { contextSize: 128 });
    try {
      const client = new TandemCloudClient({ url: server.url, token: TOKEN });
      const err = await client.connect(slm.identity).catch((e) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(/vocabulary/i);
      expect(err.message).toContain(slm.identity.name);
      expect(err.message).toContain(server.identity.name);
    } finally {
      await slm.dispose();
    }
  });

  it("the client also refuses a server whose vocabulary differs (a server that did not check)", async () => {
    const slm = await LocalModel.load(f.randA, { contextSize: 128 });
    try {
      const other = { ...slm.identity, vocabHash: "0".repeat(64), name: "impostor" };
      const client = new TandemCloudClient({ url: server.url, token: TOKEN });
      const err = await client.connect(other).catch((e) => e);
      expect(err.message).toMatch(/vocabulary/i);
      expect(err.message).toContain("impostor");
      expect(VocabularyMismatchError).toBeDefined();
    } finally {
      await slm.dispose();
    }
  });

  it.each([
    ["a truncated GGUF", () => f.corrupt, /Cannot load|truncated|corrupt|not a GGUF/i],
    ["a file that is not GGUF", () => f.notModel, /not a GGUF model file/],
    ["a missing file", () => "/nonexistent/model.gguf", /not found/],
  ])("%s: a clear ModelFileError", async (_n, file, pattern) => {
    const err = await LocalModel.load(file()).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toMatch(pattern);
  });

  it("an invalid cloud URL is a clear error", () => {
    expect(() => new TandemCloudClient({ url: "not a url" })).toThrow(/Invalid cloud URL/);
    expect(() => new TandemCloudClient({ url: "ftp://x" })).toThrow(/http/);
  });
});
