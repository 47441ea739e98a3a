/** The engine's start options from the app's folders and the environment (pure: tested without Electron). */
import type { EngineStartOptions } from "./engineProtocol.js";

const positiveInt = (v: string | undefined): number | undefined => {
  const n = Number(v);
  return v !== undefined && v !== "" && Number.isInteger(n) && n >= 0 ? n : undefined;
};

export function engineStartOptions(folders: { dataDir: string; modelsDir: string }, env: NodeJS.ProcessEnv): EngineStartOptions {
  return {
    ...folders,
    // first run: no model yet — the UI offers the catalogue or a local GGUF; later runs load the model
    // the user chose (remembered in the data folder); TANDEM_SLM overrides (tests, developers)
    slm: env.TANDEM_SLM?.trim() || null,
    cloud: env.TANDEM_CLOUD_URL ? { kind: "tandem", url: env.TANDEM_CLOUD_URL, token: env.TANDEM_CLOUD_TOKEN ?? "" } : null,
    // as browser mode's --pace-ms / --max-tokens: tiny test models answer faster than a test can watch
    paceMs: positiveInt(env.TANDEM_PACE_MS),
    maxTokens: positiveInt(env.TANDEM_MAX_TOKENS),
  };
}
