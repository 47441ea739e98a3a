/**
 * `npm run eval`'s sampling flags: a preset (default Precise, greedy), then --temperature, --top-k,
 * --top-p, --min-p over it, and --seeds n. Penalties are off in eval: it reads each model's
 * probabilities, and llama.cpp's repetition penalty needs the logits themselves (shared/sampling.ts).
 */
import { UsageError } from "../shared/errors.js";
import { SAMPLING_PRESETS, SAMPLING_PRESET_NAMES, isGreedy, samplingParamsSchema, type SamplingParams } from "../shared/sampling.js";

export interface EvalSampling {
  params: SamplingParams;
  seeds: number[];
}

/** Seeds when --seeds is not given: enough for a spread, few enough to keep a run short. */
export const DEFAULT_EVAL_SEEDS = 3;
const MAX_EVAL_SEEDS = 100;

type Flags = Partial<Record<"preset" | "temperature" | "top-k" | "top-p" | "min-p" | "seeds", string>>;

function number(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x)) throw new UsageError(`--${flag} must be a number (got ${JSON.stringify(v)})`);
  return x;
}

/** The sampling the flags ask for, or undefined for greedy; a UsageError names a bad flag. */
export function evalSampling(flags: Flags, baseSeed: number): EvalSampling | undefined {
  const preset = flags.preset ?? "precise";
  if (!(SAMPLING_PRESET_NAMES as string[]).includes(preset))
    throw new UsageError(`--preset must be one of ${SAMPLING_PRESET_NAMES.join(", ")} (got ${JSON.stringify(preset)})`);
  const base: SamplingParams = SAMPLING_PRESETS[preset as keyof typeof SAMPLING_PRESETS];
  const overrides = {
    temperature: number("temperature", flags.temperature),
    topK: number("top-k", flags["top-k"]),
    topP: number("top-p", flags["top-p"]),
    minP: number("min-p", flags["min-p"]),
  };
  const merged = { ...base, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) };
  const checked = samplingParamsSchema.safeParse({ ...merged, repeatPenalty: 1, presencePenalty: 0, frequencyPenalty: 0 });
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const flag =
      { temperature: "temperature", topK: "top-k", topP: "top-p", minP: "min-p" }[String(issue.path[0])] ?? String(issue.path[0]);
    throw new UsageError(`--${flag}: ${issue.message}`);
  }
  const n = number("seeds", flags.seeds) ?? DEFAULT_EVAL_SEEDS;
  if (!Number.isInteger(n) || n < 1 || n > MAX_EVAL_SEEDS) throw new UsageError(`--seeds must be an integer from 1 to ${MAX_EVAL_SEEDS}`);
  if (isGreedy(checked.data)) return undefined;
  return { params: checked.data, seeds: Array.from({ length: n }, (_, i) => (baseSeed + i) >>> 0) };
}

/** One line for the table's title: "sampled: temperature 0.7, top-k 20, top-p 0.8, min-p 0 · 3 seeds (1–3)". */
export function samplingLabel(s: EvalSampling): string {
  const p = s.params;
  const seeds = s.seeds.length === 1 ? `seed ${s.seeds[0]}` : `${s.seeds.length} seeds (${s.seeds[0]}–${s.seeds.at(-1)})`;
  return `sampled: temperature ${p.temperature}, top-k ${p.topK}, top-p ${p.topP}, min-p ${p.minP}, no penalties · ${seeds}`;
}
