/**
 * The cloud controls in the engine (service.ts delegates to this): a target share steering τ, budgets
 * and local-only conversations enforced by a GuardedPeer around the cloud client, what the cloud has
 * seen of each conversation, and Forget. One object per engine, over its data folder.
 */
import type { CloudControlView, CloudSeenView, ControlPatch } from "../../../shared/cloudControl.js";
import { ControlPatchSchema, ControlSettingsSchema } from "../../../shared/cloudControl.js";
import { describeIssue } from "../../../shared/protocol.js";
import type { TandemCloudClient } from "../cloud/tandemClient.js";
import type { CloudPeer } from "../cloud/peer.js";
import type { Answer } from "../decoder.js";
import { CalibrationStore } from "./calibrationStore.js";
import { GuardedPeer } from "./guardedPeer.js";
import { shareAtTau, ShareSteer, tauForShare } from "./shareCalibration.js";
import { steered } from "./steer.js";
import { CloudControlStore } from "./store.js";

/** One answer under the controls: the peer the decoder uses, its τ, and what to record when it ends. */
export interface AnswerControl {
  /** the cloud behind the conversation's limits (null: no cloud configured) */
  readonly peer: CloudPeer | null;
  /** the steer when a target share rules τ */
  readonly steer: ShareSteer | null;
  /** τ for the decoder: the steer's, else the user's */
  tau(user: () => number): () => number;
  /** the answer with every position shown to the steer */
  wrap(answer: Answer): Answer;
  /** records what the cloud saw of this answer and keeps the calibration */
  end(): Promise<void>;
}

export class CloudControl {
  private constructor(
    readonly store: CloudControlStore,
    readonly calibration: CalibrationStore,
  ) {}

  static async open(dataDir: string): Promise<CloudControl> {
    return new CloudControl(await CloudControlStore.open(dataDir), await CalibrationStore.open(dataDir));
  }

  get notices(): string[] {
    return [...this.store.notices, ...this.calibration.notices];
  }

  /** True when the calibration of `pair` holds no score yet (a fresh install, or a model pair never used). */
  needsCalibration(pair: string): boolean {
    return this.calibration.window(pair).size === 0;
  }

  /**
   * Fills an empty calibration of `pair` with the router's scores of a short local answer (the
   * caller's `decode`, run while the app is idle after a model loads), so "≈x% at this τ" and the
   * target share have something to go on before the first answer. Returns how many scores it added.
   */
  async calibrateFrom(pair: string, decode: () => AsyncIterable<{ confidence: number }>): Promise<number> {
    if (!this.needsCalibration(pair)) return 0;
    const scores: number[] = [];
    for await (const e of decode()) scores.push(e.confidence);
    // added at once: the view never shows a calibration half made
    const window = this.calibration.window(pair);
    for (const score of scores) window.add(score);
    await this.calibration.save();
    return scores.length;
  }

  /** The controls, today's use, and what the calibration of `pair` says at `tau` (and at the target). */
  view(pair: string | null, tau: number): CloudControlView {
    const s = this.store.settings;
    const sorted = pair ? this.calibration.window(pair).sorted : [];
    return {
      ...s,
      usageToday: this.store.usageToday(),
      calibration: {
        scores: sorted.length,
        shareAtTau: shareAtTau(sorted, tau),
        tauForTarget: s.targetShare === null ? null : tauForShare(sorted, s.targetShare),
      },
    };
  }

  /** Checks the whole patch first (nothing changes if a value is invalid), then saves it. */
  async update(patch: ControlPatch): Promise<void> {
    const p = ControlPatchSchema.safeParse(patch);
    if (!p.success) throw new Error(`Invalid cloud controls: ${describeIssue(p.error)}`);
    const s = this.store.settings;
    const next = ControlSettingsSchema.parse({
      targetShare: p.data.targetShare === undefined ? s.targetShare : p.data.targetShare,
      localOnlyDefault: p.data.localOnlyDefault ?? s.localOnlyDefault,
      budgets: { ...s.budgets, ...p.data.budgets },
    });
    await this.store.setSettings(next);
  }

  seen(conversationId: string): CloudSeenView {
    return { conversationId, localOnly: this.store.localOnly(conversationId), ...this.store.seen(conversationId) };
  }

  async setLocalOnly(conversationId: string, localOnly: boolean): Promise<CloudSeenView> {
    await this.store.setLocalOnly(conversationId, localOnly);
    return this.seen(conversationId);
  }

  /** A new conversation starts local-only when that is the default (recorded at once, so it holds from its first answer). */
  async created(conversationId: string): Promise<void> {
    if (this.store.settings.localOnlyDefault) await this.store.setLocalOnly(conversationId, true);
  }

  /**
   * Forget: the server deletes the session that last held the conversation and confirms it. Throws
   * when it cannot be confirmed (no cloud, unreachable): what was seen stays on record then.
   */
  async forget(conversationId: string, cloud: TandemCloudClient | null): Promise<CloudSeenView> {
    const seen = this.store.seen(conversationId);
    if (seen.sessionId !== null) {
      if (!cloud) throw new Error("The cloud is not connected, so it cannot be asked to forget; try again once it is online");
      await cloud.forget(seen.sessionId);
    }
    await this.store.forgotten(conversationId);
    return this.seen(conversationId);
  }

  /** A deleted conversation: the cloud forgets it (best effort) and its record goes. */
  async drop(conversationId: string, cloud: TandemCloudClient | null): Promise<{ forgotten: boolean }> {
    let forgotten = true;
    try {
      await this.forget(conversationId, cloud);
    } catch {
      forgotten = false; // the server evicts idle sessions anyway; the deletion must not fail for it
    }
    await this.store.drop(conversationId);
    return { forgotten };
  }

  /** The controls for one answer in `conversationId` on `cloud` (at `server`), calibrated for `pair`. */
  begin(conversationId: string, cloud: TandemCloudClient | null, server: string | null, pair: string): AnswerControl {
    const target = this.store.settings.targetShare;
    const window = this.calibration.window(pair);
    const steer = target === null ? null : new ShareSteer(window, target);
    const before = cloud ? { up: cloud.stats.bytesUp, down: cloud.stats.bytesDown, tokens: cloud.stats.tokensUp } : null;
    const peer = cloud ? new GuardedPeer(cloud, this.store.gate(conversationId, cloud.stats.bytesUp)) : null;
    return {
      peer,
      steer,
      // an explicit τ set mid-answer turns the share off at once (the last one set rules)
      tau: (user) => (steer ? () => (this.store.targetShare !== null ? steer.tau() : user()) : user),
      // without a steer the scores still feed the calibration: "≈x% at this τ" comes from them
      wrap: (answer) => steered(answer, steer ?? { observe: (e) => window.add(e.confidence) }),
      end: async () => {
        peer?.chargeStreams(); // a stream's tokens count when the answer is done with it
        if (cloud && before) {
          const sent = cloud.stats.tokensUp - before.tokens;
          await this.store.recordSeen(conversationId, {
            tokensUp: sent,
            bytesUp: cloud.stats.bytesUp - before.up,
            bytesDown: cloud.stats.bytesDown - before.down,
            server: sent > 0 ? server : null,
            model: sent > 0 ? (cloud.model?.name ?? null) : null,
            sessionId: sent > 0 ? (cloud.session ?? null) : null,
          });
        }
        await this.calibration.save();
      },
    };
  }
}
