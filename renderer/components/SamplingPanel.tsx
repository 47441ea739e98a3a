/**
 * How the open conversation's answers are sampled: a line above the message box with a "Sampling"
 * button, and the panel it opens — a preset (Precise, Balanced, Creative or Custom), the advanced
 * fields, each explained in a line with its error beside it, the seed (new each answer, or fixed), and
 * "use as default for new chats". The engine validates again (shared/sampling.ts's schemas).
 */
import { useEffect, useId, useState } from "react";
import type { Conversation } from "../../shared/bridge";
import {
  SAMPLING_PRESETS,
  presetOf,
  samplingConfigSchema,
  type SamplingConfig,
  type SamplingParams,
  type SamplingPreset,
  type SamplingSettings,
} from "../../shared/sampling";
import { PRESET_LABELS, describeParams } from "../../shared/samplingText";
import { errorMessage } from "../../shared/errors.js";
import { useApp, useSlice } from "../context";
import { selectActiveConversation } from "../state/chatReducer";
import "./SamplingPanel.css";

type ParamKey = keyof SamplingParams;

interface FieldSpec {
  key: ParamKey;
  label: string;
  help: string;
  min: number;
  max: number;
  integer?: boolean;
  /** the minimum is excluded (top-p) */
  above?: boolean;
  step: number;
}

export const SAMPLING_FIELDS: readonly FieldSpec[] = [
  {
    key: "temperature",
    label: "Temperature",
    help: "How adventurous each word is; 0 always takes the likeliest.",
    min: 0,
    max: 5,
    step: 0.05,
  },
  {
    key: "topK",
    label: "Top-k",
    help: "Only the k likeliest tokens can be picked; 0 is no limit.",
    min: 0,
    max: 1000,
    integer: true,
    step: 1,
  },
  {
    key: "topP",
    label: "Top-p",
    help: "Only the likeliest tokens that together reach p; 1 is off.",
    min: 0,
    max: 1,
    above: true,
    step: 0.05,
  },
  { key: "minP", label: "Min-p", help: "Drops tokens less than p times as likely as the top one; 0 is off.", min: 0, max: 1, step: 0.01 },
  {
    key: "repeatPenalty",
    label: "Repetition penalty",
    help: "Makes recently used tokens less likely; 1 is off.",
    min: 1,
    max: 2,
    step: 0.01,
  },
  {
    key: "repeatLastN",
    label: "Penalty window",
    help: "How many recent tokens the penalties look at (your message too).",
    min: 0,
    max: 4096,
    integer: true,
    step: 8,
  },
  {
    key: "presencePenalty",
    label: "Presence penalty",
    help: "Lowers any token already in the window; 0 is off.",
    min: -2,
    max: 2,
    step: 0.1,
  },
  {
    key: "frequencyPenalty",
    label: "Frequency penalty",
    help: "Lowers a token more each time it is in the window; 0 is off.",
    min: -2,
    max: 2,
    step: 0.1,
  },
];

const PRESET_HELP: Record<SamplingPreset | "custom", string> = {
  precise: "Always the likeliest token: the same answer every time.",
  balanced: "The models' recommended settings: natural and varied.",
  creative: "More surprising wording; best for stories.",
  custom: "Your own values below.",
};

const MAX_SEED = 0xffffffff;

/** The form's state: text as typed, so a half-typed number is not lost. */
export interface SamplingDraft {
  values: Record<ParamKey, string>;
  seedMode: "new" | "fixed";
  seed: string;
}

export function draftOf(c: SamplingConfig | SamplingSettings, seedMode?: "new" | "fixed"): SamplingDraft {
  const values = Object.fromEntries(SAMPLING_FIELDS.map((f) => [f.key, String(c[f.key])])) as Record<ParamKey, string>;
  const fixed = seedMode ?? (c.seed === null ? "new" : "fixed");
  return { values, seedMode: fixed, seed: c.seed === null ? "" : String(c.seed) };
}

/** The error of one field as typed, or null. */
export function fieldError(f: FieldSpec, text: string): string | null {
  const x = Number(text);
  if (text.trim() === "" || !Number.isFinite(x)) return "Enter a number.";
  if (f.integer && !Number.isInteger(x)) return "Enter a whole number.";
  if ((f.above ? x <= f.min : x < f.min) || x > f.max) return f.above ? `Above ${f.min}, at most ${f.max}.` : `From ${f.min} to ${f.max}.`;
  return null;
}

export function seedError(d: SamplingDraft): string | null {
  if (d.seedMode === "new") return null;
  const x = Number(d.seed);
  return d.seed.trim() !== "" && Number.isInteger(x) && x >= 0 && x <= MAX_SEED ? null : `A whole number from 0 to ${MAX_SEED}.`;
}

/** The draft as a conversation's sampling, or null while a field has an error. */
export function configOf(d: SamplingDraft): SamplingConfig | null {
  if (SAMPLING_FIELDS.some((f) => fieldError(f, d.values[f.key])) || seedError(d)) return null;
  const params = Object.fromEntries(SAMPLING_FIELDS.map((f) => [f.key, Number(d.values[f.key])])) as SamplingParams;
  const r = samplingConfigSchema.safeParse({ ...params, preset: presetOf(params), seed: d.seedMode === "new" ? null : Number(d.seed) });
  return r.success ? r.data : null;
}

/** The draft's preset: what its values are, or custom (also while a value is being typed). */
function draftPreset(d: SamplingDraft): SamplingPreset | "custom" {
  if (SAMPLING_FIELDS.some((f) => fieldError(f, d.values[f.key]))) return "custom";
  return presetOf(Object.fromEntries(SAMPLING_FIELDS.map((f) => [f.key, Number(d.values[f.key])])) as SamplingParams);
}

/** One line for a conversation's sampling: "Balanced · new seed each answer". */
export function samplingLine(c: SamplingConfig): string {
  const name = PRESET_LABELS[presetOf(c)];
  const seed = c.seed === null ? "new seed each answer" : `seed ${c.seed}`;
  return presetOf(c) === "custom" ? `${name} (${describeParams(c)}) · ${seed}` : `${name} · ${seed}`;
}

/** The line above the message box and the panel it opens (the open conversation's sampling). */
export function SamplingBar() {
  const { controller } = useApp();
  const conv = useSlice((s) => s.chat, selectActiveConversation);
  const [open, setOpen] = useState(false);
  const [fallback, setFallback] = useState<SamplingConfig | null>(null);
  useEffect(() => {
    let live = true;
    controller.defaultSampling().then(
      (c) => live && setFallback(c),
      () => {},
    );
    return () => {
      live = false;
    };
  }, [controller, conv?.id, open]);
  if (!conv) return null;
  const current = conv.sampling ?? fallback;
  return (
    <div className="sampling-bar">
      {open && current && <SamplingPanel conv={conv} current={current} onClose={() => setOpen(false)} />}
      <div className="sampling-line">
        <span className="muted small" data-testid="sampling-summary">
          {current ? samplingLine(current) : "…"}
          {!conv.sampling && current ? " (app default)" : ""}
        </span>
        <button
          className="sampling-toggle"
          data-testid="sampling-button"
          aria-expanded={open}
          aria-controls="sampling-panel"
          onClick={() => setOpen((o) => !o)}
        >
          Sampling
        </button>
      </div>
    </div>
  );
}

/** The last answer's settings and seed, for "use the last answer's settings". */
function lastAnswerSampling(conv: Conversation): SamplingSettings | undefined {
  return [...conv.messages].reverse().find((m) => m.role === "assistant" && m.sampling)?.sampling;
}

function SamplingPanel({ conv, current, onClose }: { conv: Conversation; current: SamplingConfig; onClose: () => void }) {
  const { controller } = useApp();
  const [draft, setDraft] = useState<SamplingDraft>(() => draftOf(current));
  const [asDefault, setAsDefault] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const config = configOf(draft);
  const last = lastAnswerSampling(conv);

  const apply = async (choice: SamplingConfig | null) => {
    setBusy(true);
    setFailure(null);
    try {
      await controller.setSampling(choice);
      if (asDefault && choice) await controller.setDefaultSampling(choice);
      onClose();
    } catch (e) {
      setFailure(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section id="sampling-panel" className="sampling-panel" role="dialog" aria-label="Sampling" data-testid="sampling-panel">
      <div className="sampling-head">
        <h2>Sampling</h2>
        <button className="icon-button" aria-label="close the sampling settings" onClick={onClose}>
          ×
        </button>
      </div>
      <PresetChoice draft={draft} setDraft={setDraft} />
      <details className="sampling-advanced" open={draftPreset(draft) === "custom"}>
        <summary>Advanced</summary>
        <div className="sampling-fields">
          {SAMPLING_FIELDS.map((f) => (
            <NumberField key={f.key} f={f} draft={draft} setDraft={setDraft} />
          ))}
        </div>
      </details>
      <SeedChoice draft={draft} setDraft={setDraft} last={last} />
      <label className="sampling-check">
        <input type="checkbox" data-testid="sampling-default" checked={asDefault} onChange={(e) => setAsDefault(e.target.checked)} />
        Use as default for new chats
      </label>
      {failure && (
        <p className="sampling-error" role="alert" data-testid="sampling-failure">
          {failure}
        </p>
      )}
      <div className="sampling-actions">
        {conv.sampling && (
          <button className="secondary" disabled={busy} onClick={() => void apply(null)} title="Use the app's default sampling">
            Use app default
          </button>
        )}
        <button className="primary" data-testid="sampling-apply" disabled={busy || !config} onClick={() => void apply(config)}>
          Apply
        </button>
      </div>
    </section>
  );
}

type DraftProps = { draft: SamplingDraft; setDraft: (f: (d: SamplingDraft) => SamplingDraft) => void };

function PresetChoice({ draft, setDraft }: DraftProps) {
  const preset = draftPreset(draft);
  const choose = (p: SamplingPreset | "custom") =>
    setDraft((d) => (p === "custom" ? d : { ...d, values: draftOf({ ...SAMPLING_PRESETS[p], preset: p, seed: null }).values }));
  return (
    <fieldset className="sampling-presets">
      <legend>Preset</legend>
      {(["precise", "balanced", "creative", "custom"] as const).map((p) => (
        <label key={p} className={`preset${preset === p ? " chosen" : ""}`}>
          <input type="radio" name="sampling-preset" data-testid={`preset-${p}`} checked={preset === p} onChange={() => choose(p)} />
          <span className="preset-name">{PRESET_LABELS[p]}</span>
          <span className="muted small">{PRESET_HELP[p]}</span>
        </label>
      ))}
    </fieldset>
  );
}

function NumberField({ f, draft, setDraft }: DraftProps & { f: FieldSpec }) {
  const id = useId();
  const error = fieldError(f, draft.values[f.key]);
  return (
    <div className={`sampling-field${error ? " invalid" : ""}`}>
      <label htmlFor={id}>{f.label}</label>
      <input
        id={id}
        type="number"
        inputMode="decimal"
        data-testid={`sampling-${f.key}`}
        value={draft.values[f.key]}
        step={f.step}
        min={f.min}
        max={f.max}
        aria-invalid={!!error}
        aria-describedby={`${id}-help`}
        onChange={(e) => {
          const v = e.target.value;
          setDraft((d) => ({ ...d, values: { ...d.values, [f.key]: v } }));
        }}
      />
      <span
        id={`${id}-help`}
        className={error ? "sampling-error small" : "muted small"}
        data-testid={error ? `sampling-${f.key}-error` : undefined}
      >
        {error ?? f.help}
      </span>
    </div>
  );
}

function SeedChoice({ draft, setDraft, last }: DraftProps & { last?: SamplingSettings }) {
  const id = useId();
  const error = seedError(draft);
  return (
    <fieldset className="sampling-seed">
      <legend>Seed</legend>
      <label>
        <input
          type="radio"
          name="sampling-seed"
          data-testid="seed-new"
          checked={draft.seedMode === "new"}
          onChange={() => setDraft((d) => ({ ...d, seedMode: "new" }))}
        />
        New each answer <span className="muted small">— Regenerate gives a different answer.</span>
      </label>
      <label>
        <input
          type="radio"
          name="sampling-seed"
          data-testid="seed-fixed"
          checked={draft.seedMode === "fixed"}
          onChange={() => setDraft((d) => ({ ...d, seedMode: "fixed" }))}
        />
        Fixed
        <input
          id={id}
          className="seed-input"
          inputMode="numeric"
          data-testid="sampling-seed"
          value={draft.seed}
          aria-label="seed"
          aria-invalid={!!error}
          placeholder="e.g. 42"
          onChange={(e) => {
            const v = e.target.value;
            setDraft((d) => ({ ...d, seedMode: "fixed", seed: v }));
          }}
        />
      </label>
      <span className={error ? "sampling-error small" : "muted small"} data-testid={error ? "sampling-seed-error" : undefined}>
        {error ?? "The same seed, settings and question give the same answer."}
      </span>
      {last && (
        <button
          className="link-button small"
          data-testid="sampling-use-last"
          onClick={() => setDraft(() => draftOf(last, "fixed"))}
          title="Fill in the settings and seed of the last answer, to reproduce it"
        >
          Use the last answer's settings (seed {last.seed})
        </button>
      )}
    </fieldset>
  );
}
