/**
 * The cloud controls as every process sees them (the engine, the renderer): a target cloud share,
 * budgets, local-only conversations, and what the cloud has seen of a conversation. Zod schemas with
 * their types; no Node imports. The engine keeps them in `cloud-control.json` (electron/engine/cloudControl/store.ts).
 */
import { z } from "zod";

/**
 * The app's default control on a fresh install (issue 18): about this share of each answer from the
 * cloud, τ calibrated as the answer goes. The research's operating point: Qwen2.5-0.5B gained 60% on
 * CommonsenseQA with under 7% of its tokens from the LLM. The CLI keeps τ as its default.
 */
export const APP_TARGET_SHARE = 0.07;

export const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const cap = count.nullable();

export const BudgetsSchema = z.object({
  /** cloud tokens per conversation (null: no cap) */
  conversationTokens: cap,
  /** cloud tokens per UTC day, all conversations */
  dayTokens: cap,
  /** bytes sent to the cloud per UTC day */
  dayBytesUp: cap,
});
export type Budgets = z.infer<typeof BudgetsSchema>;

export const ControlSettingsSchema = z.object({
  /** about this share of positions from the cloud (τ calibrated); null: the τ set by the user rules */
  targetShare: z.number().min(0).max(1).nullable(),
  /** new conversations start local-only */
  localOnlyDefault: z.boolean(),
  budgets: BudgetsSchema,
});
export type ControlSettings = z.infer<typeof ControlSettingsSchema>;

export const CloudSeenSchema = z.object({
  /** token IDs of the conversation sent to the cloud (prompt, answers, re-syncs): the whole conversation so far is synced */
  tokensUp: count,
  /** tokens the cloud wrote (charged to the budgets: what it returned) */
  cloudTokens: count,
  bytesUp: count,
  bytesDown: count,
  server: z.string().max(2048).nullable(),
  model: z.string().max(512).nullable(),
  /** the server session that last held the conversation, until forgotten */
  sessionId: z.string().max(256).nullable(),
  /** when the server confirmed it forgot (ms since the epoch), null if never */
  forgottenAt: z.number().nullable(),
});
export type CloudSeen = z.infer<typeof CloudSeenSchema>;

/** What the app shows and sets: the settings, today's use, and the calibration behind the share control. */
export interface CloudControlView extends ControlSettings {
  usageToday: { cloudTokens: number; bytesUp: number };
  calibration: {
    /** router scores the calibration holds for the current model pair (0: none yet) */
    scores: number;
    /** the share of recent positions the current τ would send to the cloud (null: no scores yet) */
    shareAtTau: number | null;
    /** the τ that would send the target share (null: no target or no scores) */
    tauForTarget: number | null;
  };
}

/** A change to the cloud controls (fields absent: unchanged). */
export const ControlPatchSchema = z.object({
  targetShare: z.number().min(0).max(1).nullable().optional(),
  localOnlyDefault: z.boolean().optional(),
  budgets: BudgetsSchema.partial().optional(),
});
export type ControlPatch = z.infer<typeof ControlPatchSchema>;

/** What the cloud has seen of one conversation, and whether it is local-only. */
export interface CloudSeenView extends CloudSeen {
  conversationId: string;
  localOnly: boolean;
}
