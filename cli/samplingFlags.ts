/**
 * The terminal chat's sampling flags: `--preset precise|balanced|creative` and the fields that
 * override it (`--temperature x --top-p x --top-k n --min-p x --repeat-penalty x --seed n`), checked
 * with the settings' own schema (shared/sampling.ts). Without `--seed` each answer draws a new seed,
 * except in the demo, whose default stays reproducible: Balanced with seed DEMO_SEED.
 */
import { UsageError } from "../shared/errors.js";
import {
  presetConfig,
  presetOf,
  SAMPLING_PRESET_NAMES,
  samplingConfigSchema,
  type SamplingConfig,
  type SamplingPreset,
  type SamplingSettings,
} from "../shared/sampling.js";

/** the demo's seed when none is given: the same demo answer every run */
export const DEMO_SEED = 1;

/** parseArgs options of the sampling flags */
export const SAMPLING_FLAG_OPTIONS = {
  preset: { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "repeat-penalty": { type: "string" },
  seed: { type: "string" },
} as const;

/** each settings field's flag, for errors that name what the user typed */
const FLAG_OF = {
  temperature: "temperature",
  topK: "top-k",
  topP: "top-p",
  minP: "min-p",
  repeatPenalty: "repeat-penalty",
  seed: "seed",
} as const;

export const SAMPLING_USAGE = `[--preset precise|balanced|creative] [--temperature x] [--top-k n] [--top-p x] [--min-p x]
                      [--repeat-penalty x] [--seed n]`;

/** The sampling config the flags ask for; a UsageError naming the flag for a value out of range. */
export function samplingFromFlags(values: Partial<Record<keyof typeof SAMPLING_FLAG_OPTIONS, string>>, demo: boolean): SamplingConfig {
  const preset = (values.preset ?? "balanced") as SamplingPreset;
  if (!SAMPLING_PRESET_NAMES.includes(preset))
    throw new UsageError(`--preset: expected one of ${SAMPLING_PRESET_NAMES.join(", ")}, got ${JSON.stringify(values.preset)}`);
  const config: Record<string, unknown> = { ...presetConfig(preset, demo ? DEMO_SEED : null) };
  for (const [field, flag] of Object.entries(FLAG_OF)) {
    const v = values[flag];
    if (v === undefined) continue;
    const n = v.trim() === "" ? Number.NaN : Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`--${flag}: expected a number, got ${JSON.stringify(v)}`);
    config[field] = n;
  }
  const r = samplingConfigSchema.safeParse({ ...config, preset: "custom" });
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const flag = FLAG_OF[issue.path[0] as keyof typeof FLAG_OF] ?? String(issue.path[0]);
    throw new UsageError(`--${flag}: ${issue.message} (got ${JSON.stringify(values[flag as keyof typeof values])})`);
  }
  return { ...r.data, preset: presetOf(r.data) };
}

/** One line saying how an answer is sampled, enough to reproduce it with the flags. */
export function describeSampling(s: SamplingSettings): string {
  const name = presetOf(s);
  if (s.temperature === 0) return `sampling: ${name} (greedy)${s.repeatPenalty !== 1 ? `, repeat penalty ${s.repeatPenalty}` : ""}`;
  return (
    `sampling: ${name} · temperature ${s.temperature} · top-k ${s.topK} · top-p ${s.topP} · min-p ${s.minP} · ` +
    `repeat penalty ${s.repeatPenalty} · seed ${s.seed} (--seed ${s.seed} reproduces it)`
  );
}
