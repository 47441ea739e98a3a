/** A real same-vocabulary SLM/LLM pair with a cloud token server, for engine tests. */
import { randomBytes } from "node:crypto";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { TandemCloudClient, type TandemClientOptions } from "../../electron/engine/cloud/tandemClient.js";
import { LocalModel } from "../../inference/localModel.js";

export interface PairFiles {
  name: string;
  slm: string;
  llm: string;
}

/** The stories260K-derived pair when ../shared is present; otherwise null (callers skip, saying so). */
export async function storiesPair(): Promise<PairFiles | null> {
  const f = await ensureFixtures();
  return f.storiesSlm && f.storiesLlm ? { name: "stories260K pair", slm: f.storiesSlm, llm: f.storiesLlm } : null;
}

/** Random-weight models with the real Qwen2 vocabulary: needs nothing from ../shared. */
export async function randomQwenPair(): Promise<PairFiles> {
  const f = await ensureFixtures();
  return { name: "random qwen2-vocab pair", slm: f.randA, llm: f.randB };
}

export interface RunningPair {
  slm: LocalModel;
  server: CloudServer;
  token: string;
  client(opts?: Partial<TandemClientOptions>): Promise<TandemCloudClient>;
  close(): Promise<void>;
}

export async function startPair(files: PairFiles, opts: { hiddenState?: boolean } = {}): Promise<RunningPair> {
  const token = randomBytes(12).toString("hex");
  const server = await startCloudServer({ modelPath: files.llm, host: "127.0.0.1", port: 0, token });
  const slm = await LocalModel.load(files.slm, { contextSize: 1024, hiddenState: opts.hiddenState });
  const clients: TandemCloudClient[] = [];
  return {
    slm,
    server,
    token,
    async client(o = {}) {
      const c = new TandemCloudClient({ url: server.url, token, ...o });
      await c.connect(slm.identity);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) await c.close();
      await server.close();
      await slm.dispose();
    },
  };
}
