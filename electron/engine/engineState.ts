/**
 * The engine's shared state: what the service's concerns (answers.ts, models.ts, cloudConnection.ts,
 * cloudControls.ts, conversationOps.ts, settingsOps.ts) read and change, and the events they push.
 * One object, made by the service (service.ts) and passed to each concern; no globals.
 */
import type {
  AnswerHandle,
  BridgeEvent,
  BridgeListener,
  CloudSettings,
  CloudStatus,
  Conversation,
  LiveStats,
  ModelStatus,
  StageStatus,
  Theme,
} from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { ConfidenceRouter, validateTau, type Router } from "../../shared/router.js";
import type { TandemCloudClient } from "./cloud/tandemClient.js";
import type { ConversationStore } from "./conversationStore.js";
import type { LocalModel } from "../../inference/localModel.js";
import type { SelfDistiller } from "./selfDistill.js";
import type { SettingsStore } from "./settings.js";
import type { DataFolderLock } from "./dataLock.js";
import type { CloudControl } from "./cloudControl/engineControl.js";
import { ModelDownloads } from "./modelDownloads.js";
import { IdlePrefill } from "./idlePrefill.js";
import { errorMessage } from "../../shared/errors.js";
import { DEFAULT_CHAT_SAMPLING, type SamplingConfig } from "../../shared/sampling.js";
import type { ServiceOptions } from "./serviceOptions.js";

export const emptyStage = (source: string | null = null): StageStatus => ({
  source,
  name: null,
  loaded: false,
  error: null,
  progress: null,
});

export interface ActiveAnswer {
  handle: AnswerHandle;
  abort: AbortController;
  pending: TokenEvent[];
  timer: NodeJS.Timeout | null;
  startedAt: number;
  done: Promise<void>;
}

export class EngineState {
  readonly listeners = new Set<BridgeListener>();
  slm: LocalModel | null = null;
  /** the learned router matching the SLM, else the confidence router (re-chosen when the SLM changes) */
  router: Router;
  /** learning a distilled router while the confidence router routes; null once there is a router file */
  distiller: SelfDistiller | null = null;
  cloud: TandemCloudClient | null = null;
  cloudSettings: CloudSettings;
  cloudStatusValue: CloudStatus;
  tau: number;
  models: ModelStatus;
  active: ActiveAnswer | null = null;
  readonly totals: LiveStats["totals"] = {
    answers: 0,
    tokens: 0,
    cloudTokens: 0,
    fallbackTokens: 0,
    cloudCalls: 0,
    bytesUp: 0,
    bytesDown: 0,
  };
  readonly notices: string[] = [];
  closed = false;
  theme: Theme;
  /** the chosen context size; null: the model's own */
  contextChoice: number | null;
  defaultSystemPrompt: string;
  defaultSampling: SamplingConfig;
  /** per conversation, the first message the last answer read (the context window's start, contextWindow.ts) */
  readonly keepFrom = new Map<string, number>();
  /** settings writes, one after another; close() waits for them */
  saving: Promise<unknown> = Promise.resolve();
  /** A finished download being loaded and remembered: close() waits for it so the choice is never lost. */
  adopting: Promise<void> | null = null;
  /** The inspector's re-evaluation of a stored answer on the SLM: an answer starting meanwhile waits for it. */
  inspecting: Promise<unknown> = Promise.resolve();
  /** the next turn's slide, planned when an answer ends and evaluated while the user types (idlePrefill.ts) */
  readonly idle = new IdlePrefill(this);
  /** this engine's hold on its data folder, released by close() */
  lock: DataFolderLock | null = null;
  /** target share, budgets, local-only, what the cloud has seen (cloudControl/) */
  control!: CloudControl;
  readonly downloads = new ModelDownloads((download) => {
    this.models = { ...this.models, download };
    this.emit({ type: "models", models: this.models });
  });

  constructor(
    readonly opts: ServiceOptions,
    readonly store: ConversationStore,
    readonly settings: SettingsStore,
    savedToken: string | null,
  ) {
    const saved = settings.get();
    this.router = opts.router ?? new ConfidenceRouter();
    this.tau = validateTau(opts.tau ?? saved.tau ?? 0.5);
    this.theme = saved.theme ?? "system";
    this.contextChoice = opts.contextSize ?? saved.contextSize ?? null;
    this.defaultSystemPrompt = opts.systemPrompt ?? saved.systemPrompt ?? "";
    this.defaultSampling = opts.sampling ?? saved.sampling ?? DEFAULT_CHAT_SAMPLING;
    const savedCloud: CloudSettings | undefined = saved.cloudKind
      ? { kind: saved.cloudKind, url: saved.cloudUrl ?? "", token: savedToken ?? "" }
      : undefined;
    this.cloudSettings = opts.cloud ?? savedCloud ?? opts.cloudDefault ?? { kind: "none", url: "", token: "" };
    this.cloudStatusValue = this.statusFromSettings("disabled", null);
    this.models = { slm: emptyStage(opts.slm ?? null), llm: opts.llm ?? emptyStage(), router: this.router.name, download: null };
    this.notices.push(...store.notices, ...settings.notices);
  }

  emit(event: BridgeEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // a broken listener (a closed socket) must not stop the answer for the others
      }
    }
  }

  notice(message: string): void {
    this.notices.push(message);
    this.emit({ type: "notice", message });
  }

  emitConversations(): void {
    this.emit({ type: "conversations", conversations: this.store.list() });
  }

  /** Saves settings in the background, in order; a failing disk is a notice, never an error of the operation. */
  persist(patch: Parameters<SettingsStore["update"]>[0], after?: () => Promise<void>): void {
    this.saving = this.saving
      .then(() => this.settings.update(patch))
      .then(after)
      .catch((err) => this.notice(`Could not save the settings: ${errorMessage(err)}`));
  }

  statusFromSettings(state: CloudStatus["state"], detail: string | null, model: string | null = null): CloudStatus {
    const s = this.cloudSettings;
    return { kind: s.kind, url: s.url, hasToken: !!s.token, state, detail, model };
  }

  /** Stops the answer being written, if any, and waits until it has ended (saved, reported). */
  async stopActive(): Promise<void> {
    const a = this.active;
    if (!a) return;
    a.abort.abort();
    await a.done;
  }

  /** The sampling a conversation's answers use: its own, or the app's default. */
  samplingOf(conv: Conversation): SamplingConfig {
    return conv.sampling ?? this.defaultSampling;
  }

  get maxTokens(): number {
    return this.opts.maxTokens ?? 256;
  }
}
