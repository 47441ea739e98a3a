/**
 * Settings (settings.ts): τ, theme, context size, default system prompt and sampling; checked, saved, applied.
 * A concern of the engine service (service.ts), over its shared state (engineState.ts).
 */
import type { OpArg, OpResult, SettingsPatch, SettingsView } from "../../shared/bridge.js";
import { validateTau } from "../../shared/router.js";
import { MAX_CONTEXT_SIZE, MAX_SYSTEM_PROMPT_CHARS, MIN_CONTEXT_SIZE } from "./settings.js";
import { samplingConfigSchema, type SamplingConfig } from "../../shared/sampling.js";
import type { EngineState } from "./engineState.js";
import type { Models } from "./models.js";
import type { CloudControls } from "./cloudControls.js";

export class SettingsOps {
  constructor(
    private readonly s: EngineState,
    private readonly models: Models,
    private readonly controls: CloudControls,
  ) {}

  async setTau({ tau }: OpArg<"setTau">): Promise<OpResult<"setTau">> {
    // the decoder reads τ through a function before every token: this takes effect on the next one
    this.s.tau = validateTau(Number(tau));
    this.s.emit({ type: "tau", tau: this.s.tau });
    this.s.persist({ tau: this.s.tau });
    await this.controls.explicitTau();
    return { tau: this.s.tau };
  }

  async getSettings(_arg: OpArg<"getSettings"> = {}): Promise<SettingsView> {
    const c = this.s.cloudSettings;
    return {
      tau: this.s.tau,
      theme: this.s.theme,
      cloud: { kind: c.kind, url: c.url, hasToken: !!c.token },
      tokenStorage: this.s.settings.secrets.kind,
      slm: this.s.models.slm.source,
      contextSize: this.s.contextChoice,
      loadedContextSize: this.s.slm?.contextSize ?? null,
      systemPrompt: this.s.defaultSystemPrompt,
      sampling: this.s.defaultSampling,
    };
  }

  /** Checks every value first (nothing changes if one is invalid), saves, then applies. */
  async updateSettings(patch: OpArg<"updateSettings">): Promise<SettingsView> {
    const p = checkSettingsPatch(patch);
    if (p.contextSize !== undefined && p.contextSize !== this.s.contextChoice && this.s.active) {
      throw new Error("Stop the current answer before changing the context size");
    }
    await this.s.settings.update(p);
    if (p.tau !== undefined) {
      this.s.tau = p.tau;
      this.s.emit({ type: "tau", tau: this.s.tau });
      await this.controls.explicitTau();
    }
    if (p.theme !== undefined) this.s.theme = p.theme;
    if (p.systemPrompt !== undefined) this.s.defaultSystemPrompt = p.systemPrompt;
    if (p.sampling !== undefined) this.s.defaultSampling = p.sampling;
    if (p.contextSize !== undefined && p.contextSize !== this.s.contextChoice) {
      this.s.contextChoice = p.contextSize;
      // the context is made with the model: load it again at the new size
      if (this.s.slm && this.s.models.slm.source) await this.models.loadSlm(this.s.models.slm.source);
    }
    const view = await this.getSettings();
    this.s.emit({ type: "settings", settings: view });
    return view;
  }
}

/** The settings form's values, checked: a clear error for the first invalid one. */
function checkSettingsPatch(patch: SettingsPatch): SettingsPatch {
  if (typeof patch !== "object" || patch === null) throw new Error("Settings must be an object");
  const out: SettingsPatch = {};
  if (patch.tau !== undefined) out.tau = validateTau(Number(patch.tau));
  if (patch.theme !== undefined) {
    if (patch.theme !== "system" && patch.theme !== "light" && patch.theme !== "dark")
      throw new Error(`Unknown theme ${JSON.stringify(patch.theme)}`);
    out.theme = patch.theme;
  }
  if (patch.contextSize !== undefined) {
    const n = patch.contextSize;
    if (n !== null && !(Number.isInteger(n) && n >= MIN_CONTEXT_SIZE && n <= MAX_CONTEXT_SIZE)) {
      throw new Error(`The context size is a whole number of tokens from ${MIN_CONTEXT_SIZE} to ${MAX_CONTEXT_SIZE} (or the model's own)`);
    }
    out.contextSize = n;
  }
  if (patch.systemPrompt !== undefined) {
    if (typeof patch.systemPrompt !== "string" || patch.systemPrompt.length > MAX_SYSTEM_PROMPT_CHARS) {
      throw new Error(`The system prompt is text of at most ${MAX_SYSTEM_PROMPT_CHARS} characters`);
    }
    out.systemPrompt = patch.systemPrompt;
  }
  if (patch.sampling !== undefined) out.sampling = checkSampling(patch.sampling);
  return out;
}

export function checkSampling(value: unknown): SamplingConfig {
  const r = samplingConfigSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`Invalid sampling setting ${issue?.path.join(".") || ""}: ${issue?.message ?? "bad value"}`.replace("  ", " "));
  }
  return r.data;
}
