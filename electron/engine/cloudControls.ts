/**
 * Cloud controls (cloudControl/): target share, budgets, local-only, what the cloud has seen, Forget.
 * A concern of the engine service (service.ts), over its shared state (engineState.ts).
 */
import type { OpArg, OpResult } from "../../shared/bridge.js";
import { errorMessage } from "../../shared/errors.js";
import { pairKey } from "./cloudControl/calibrationStore.js";
import type { EngineState } from "./engineState.js";
import { CollaborativeDecoder } from "./decoder.js";
import { presetConfig, resolveSampling } from "../../shared/sampling.js";

/** The short local answer a new model pair's calibration is made from (issue 17: "≈x% at this τ" before the first answer). */
const CALIBRATION_PROMPT = "Tell me a short story about a child who finds something unexpected on the way home.";
const CALIBRATION_TOKENS = 64;

export class CloudControls {
  /** the calibration running, if any (one at a time) */
  private calibrating: Promise<void> | null = null;

  constructor(private readonly s: EngineState) {}

  /**
   * A model pair the calibration holds nothing of (a fresh install, another model): the router scores
   * a short local answer now, while the SLM is idle, so the share a τ gives is known before the first
   * answer. The SLM has one sequence: this runs in the `inspecting` chain, which an answer waits for,
   * and stops at the next token once the engine closes.
   */
  calibrateIfNeeded(): Promise<void> {
    const slm = this.s.slm;
    if (this.calibrating) return this.calibrating;
    if (!slm || this.s.closed || !this.s.control.needsCalibration(this.pairKey())) return Promise.resolve();
    const key = this.pairKey();
    const router = this.s.router;
    const closed = () => this.s.closed || this.s.slm !== slm;
    const decode = async function* () {
      const prompt = slm.promptFromMessages([{ role: "user", content: CALIBRATION_PROMPT }]);
      const answer = new CollaborativeDecoder(slm, router, null).generate(prompt, {
        tau: 0,
        maxTokens: CALIBRATION_TOKENS,
        sampling: resolveSampling(presetConfig("precise", 0)),
      });
      for await (const e of answer) {
        if (closed()) return;
        yield e;
      }
    };
    const run = this.s.inspecting.then(async () => {
      if (closed()) return;
      await this.s.control.calibrateFrom(key, decode);
      this.s.emit({ type: "cloud-control", control: this.controlView() });
    });
    this.calibrating = run
      .catch((err) => this.s.notice(`Could not calibrate the cloud share: ${errorMessage(err)}`))
      .finally(() => (this.calibrating = null));
    this.s.inspecting = this.calibrating;
    return this.calibrating;
  }

  /** The model pair a calibration belongs to: the SLM, the router scoring it, the cloud's model. */
  pairKey(): string {
    return pairKey({ slm: this.s.slm?.identity.name ?? "none", router: this.s.router.name, cloud: this.s.cloud?.model?.name ?? null });
  }

  private controlView() {
    return this.s.control.view(this.s.slm ? this.pairKey() : null, this.s.tau);
  }

  async cloudControl(_arg: OpArg<"cloudControl"> = {}): Promise<OpResult<"cloudControl">> {
    return this.controlView();
  }

  async updateCloudControl(patch: OpArg<"updateCloudControl">): Promise<OpResult<"updateCloudControl">> {
    await this.s.control.update(patch);
    const view = this.controlView();
    this.s.emit({ type: "cloud-control", control: view });
    return view;
  }

  /** An explicit τ turns a target share off: the last one set rules. */
  async explicitTau(): Promise<void> {
    if (this.s.control.store.settings.targetShare === null) return;
    await this.updateCloudControl({ targetShare: null }).catch((err) =>
      this.s.notice(`Could not save the cloud controls: ${errorMessage(err)}`),
    );
  }

  async cloudSeen({ conversationId }: OpArg<"cloudSeen">): Promise<OpResult<"cloudSeen">> {
    this.s.store.get(String(conversationId)); // an unknown conversation is an error, not an empty record
    return this.s.control.seen(String(conversationId));
  }

  async setLocalOnly({ conversationId, localOnly }: OpArg<"setLocalOnly">): Promise<OpResult<"setLocalOnly">> {
    this.s.store.get(String(conversationId));
    const seen = await this.s.control.setLocalOnly(String(conversationId), localOnly === true);
    this.s.emit({ type: "cloud-seen", seen });
    return seen;
  }

  async forgetCloud({ conversationId }: OpArg<"forgetCloud">): Promise<OpResult<"forgetCloud">> {
    this.s.store.get(String(conversationId));
    if (this.s.active?.handle.conversationId === conversationId)
      throw new Error("Stop the current answer before asking the cloud to forget");
    const seen = await this.s.control.forget(String(conversationId), this.s.cloud);
    this.s.emit({ type: "cloud-seen", seen });
    return seen;
  }

  /** After an answer: what the cloud saw of it is recorded, the calibration kept; the UI is told. */
  async endCloudControl(control: { end(): Promise<void> } | null, conversationId: string): Promise<void> {
    if (!control) return;
    try {
      await control.end();
    } catch (err) {
      this.s.notice(`Could not save what the cloud has seen: ${errorMessage(err)}`);
    }
    this.s.emit({ type: "cloud-seen", seen: this.s.control.seen(conversationId) });
    this.s.emit({ type: "cloud-control", control: this.controlView() });
  }
}
