/**
 * The router's recent scores per model pair (shareCalibration.ts), kept in the data folder as
 * `calibration.json` so a target share is calibrated from the first position of the next run too.
 * Bounded: at most MAX_PAIRS pairs (the least recently used go first) of at most WINDOW_SIZE scores.
 * A file that cannot be read is set aside (`calibration.json.corrupt-<time>`) and calibration starts over.
 */
import { readFile, rename } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../atomicFile.js";
import { ScoreWindow, WINDOW_SIZE } from "./shareCalibration.js";

export const CALIBRATION_FILE = "calibration.json";
export const MAX_PAIRS = 16;
/** Largest calibration file read: MAX_PAIRS windows of numbers, with room to spare. */
const MAX_FILE_BYTES = MAX_PAIRS * WINDOW_SIZE * 32 + 64 * 1024;

const FileSchema = z.object({
  version: z.literal(1),
  pairs: z.array(z.object({ key: z.string().min(1).max(2048), scores: z.array(z.number().min(0).max(1)).max(WINDOW_SIZE) })).max(MAX_PAIRS),
});

/** What a model pair is, for calibration: the SLM's weights, the router, and the cloud's model. */
export function pairKey(parts: { slm: string; router: string; cloud: string | null }): string {
  return JSON.stringify([parts.slm, parts.router, parts.cloud ?? "none"]);
}

export class CalibrationStore {
  /** most recently used last */
  private readonly windows = new Map<string, ScoreWindow>();
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: string | null,
    readonly notices: string[] = [],
  ) {}

  /** A store kept in memory only (the terminal chat without a data folder). */
  static inMemory(): CalibrationStore {
    return new CalibrationStore(null);
  }

  static async open(dataDir: string): Promise<CalibrationStore> {
    const file = path.join(dataDir, CALIBRATION_FILE);
    const store = new CalibrationStore(file);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return store;
      store.notices.push(`Could not read the cloud-share calibration (${(err as Error).message}); it starts over.`);
      return store;
    }
    const parsed = text.length <= MAX_FILE_BYTES ? safeJson(text) : undefined;
    const ok = FileSchema.safeParse(parsed);
    if (!ok.success) {
      const aside = `${file}.corrupt-${Date.now()}`;
      await rename(file, aside).catch(() => {});
      store.notices.push(`The cloud-share calibration could not be read; it was set aside as ${path.basename(aside)} and starts over.`);
      return store;
    }
    for (const p of ok.data.pairs) store.windows.set(p.key, new ScoreWindow(WINDOW_SIZE, p.scores));
    return store;
  }

  /** The window of `key`'s scores (a new one for a new pair), marked most recently used. */
  window(key: string): ScoreWindow {
    const w = this.windows.get(key) ?? new ScoreWindow();
    this.windows.delete(key);
    this.windows.set(key, w);
    while (this.windows.size > MAX_PAIRS) this.windows.delete(this.windows.keys().next().value!);
    return w;
  }

  /** Whether `key` has scores yet. */
  has(key: string): boolean {
    return (this.windows.get(key)?.size ?? 0) > 0;
  }

  /** Writes the windows (in the background, in order); a failing disk costs only the calibration. */
  save(): Promise<void> {
    if (!this.file) return Promise.resolve();
    const file = this.file;
    const data = JSON.stringify({ version: 1, pairs: [...this.windows].map(([key, w]) => ({ key, scores: w.inOrder() })) });
    this.saving = this.saving.then(() => writeFileAtomic(file, data)).catch(() => {});
    return this.saving;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
