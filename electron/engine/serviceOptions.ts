/** What the engine service is started with (service.ts): the data folder, the models, the defaults of this run. */
import type { CatalogueItem, CloudSettings, StageStatus } from "../../shared/bridge.js";
import type { Router } from "../../shared/router.js";
import type { SamplingConfig } from "../../shared/sampling.js";
import type { SelfDistillOptions } from "./selfDistill.js";
import type { SecretStore } from "./settings.js";
import type { DataFolderLock } from "./dataLock.js";

export interface ServiceOptions {
  /** where conversations (and downloaded models) live: the user's data folder */
  dataDir: string;
  /** where downloaded models go; default <dataDir>/models (the app passes a folder the user can see) */
  modelsDir?: string;
  /**
   * The SLM: a GGUF path or an hf: URI. Absent: the model the user last chose (remembered in the data
   * folder), or none yet — the first run, where the user picks one from the catalogue.
   */
  slm?: string | null;
  /** the downloadable SLMs; default: the catalogue's SLM entries */
  catalogue?: CatalogueItem[];
  /**
   * Given (a command-line flag): overrides the saved value for this run. Absent: the saved one.
   * Likewise `tau`, `contextSize`, `systemPrompt` and `slm`.
   */
  cloud?: CloudSettings;
  /** the cloud when none is given and none is saved (browser mode's in-process server) */
  cloudDefault?: CloudSettings;
  /** where the cloud token is kept; default a 0600 file in the data folder (settings.ts) */
  secrets?: SecretStore;
  /** the data folder's lock, when the caller took it before anything else (browser mode); released at close */
  dataLock?: DataFolderLock;
  /** the default system prompt for this run */
  systemPrompt?: string;
  /** the default sampling for this run (a command-line flag); absent: the saved one, else Balanced */
  sampling?: SamplingConfig;
  /** status of an LLM hosted in-process by the caller (browser mode); shown, not managed, here */
  llm?: StageStatus;
  tau?: number;
  /**
   * The target cloud share a fresh install starts with (the app: APP_TARGET_SHARE, its default
   * control). Ignored when τ is given (a flag) or saved, or once the cloud controls were saved.
   * Absent: τ rules (the CLI, tests).
   */
  freshTargetShare?: number;
  maxTokens?: number;
  /** SLM candidates per token for the inspector */
  topK?: number;
  deadlineMs?: number;
  /** the SLM's context size; default: the saved one, else what the model supports within memory */
  contextSize?: number;
  /**
   * Pause between tokens, ms. Tiny test models answer in milliseconds, faster than a person (or a UI
   * test) can watch or press Stop; a pace makes the stream visible. 0 (no pause) for real models.
   */
  paceMs?: number;
  /** how often batched token deltas are pushed, ms */
  flushMs?: number;
  router?: Router;
  /**
   * Learning the distilled router from the user's answers when no router file matches the SLM
   * (selfDistill.ts): on by default; false turns it off; numbers override its thresholds (tests).
   */
  selfDistill?: false | Partial<Omit<SelfDistillOptions, "dir">>;
}
