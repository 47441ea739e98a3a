/**
 * How much of an answer comes from the cloud, first in the top bar: "about N% of each answer" (the
 * default control: the engine calibrates τ from the router's recent scores as each answer goes) or,
 * as the advanced control, the threshold τ itself with the share it gives. One switch between them;
 * choosing τ (or moving its slider) turns the target off, as the engine does for an explicit τ.
 */
import { useEffect, useRef, useState } from "react";
import type { CloudControlView, ControlPatch } from "../../shared/cloudControl";
import { APP_TARGET_SHARE } from "../../shared/cloudControl";
import { errorMessage } from "../../shared/errors.js";
import { useApp, useSlice } from "../context";
import { formatPercent } from "../state/answerStats";
import { useCloudControl } from "../state/useCloudControl";

/** The share slider's range: beyond half, "mostly cloud" is what τ = 1 says better. */
const MAX_SHARE = 0.5;
/** A dragged slider is saved once it rests this long (each save re-reads the calibration). */
const SAVE_AFTER_MS = 250;

export function ShareControl(props: { fallbackShare: number | null }) {
  const { bridge, stores } = useApp();
  const tau = useSlice(
    (s) => s.session,
    (s) => s.tau,
  );
  const control = useCloudControl(tau);
  const update = (patch: ControlPatch) =>
    bridge
      ?.updateCloudControl(patch)
      .then(() => {}) // the engine's cloud-control event carries the new controls to every view
      .catch((e: unknown) => stores.session.setState((s) => ({ notices: [...s.notices, `Cloud controls: ${errorMessage(e)}`] })));
  const shareMode = control !== null && control.targetShare !== null;
  return (
    <div className="tau" data-testid="tau" data-mode={shareMode ? "share" : "tau"}>
      <div className="tau-row">
        <div className="mode-switch" role="group" aria-label="how the cloud's part is set">
          <button
            type="button"
            data-testid="mode-share"
            aria-pressed={shareMode}
            disabled={control === null}
            title="set about how much of each answer comes from the cloud"
            onClick={() => !shareMode && void update({ targetShare: shareOf(control) })}
          >
            Share
          </button>
          <button
            type="button"
            data-testid="mode-tau"
            aria-pressed={!shareMode}
            disabled={control === null}
            title="advanced: set the router's threshold τ yourself"
            onClick={() => shareMode && void update({ targetShare: null })}
          >
            τ
          </button>
        </div>
        {shareMode ? (
          <ShareSlider control={control} update={update} />
        ) : (
          <TauSlider control={control} fallbackShare={props.fallbackShare} />
        )}
      </div>
      <div id="tau-help" className="tau-help" data-testid="tau-help">
        {shareMode
          ? "The cloud writes about this share of each answer's tokens: the ones the router is least sure of"
          : "Tokens the router scores below τ are written by the cloud · 0 all local, 1 all cloud"}
      </div>
    </div>
  );
}

/** Switching to the share keeps what τ did: the share it gives now (on a step of the slider), else the app's default. */
function shareOf(control: CloudControlView | null): number {
  const at = control?.calibration.shareAtTau;
  return at === null || at === undefined ? APP_TARGET_SHARE : Math.min(MAX_SHARE, Math.round(at * 100) / 100);
}

function ShareSlider(props: { control: CloudControlView; update: (p: ControlPatch) => Promise<void> | undefined }) {
  const { control, update } = props;
  const saved = control.targetShare ?? APP_TARGET_SHARE;
  const [draft, setDraft] = useState(saved);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => setDraft(saved), [saved]); // another view (or a restart) changed it
  useEffect(() => () => clearTimeout(timer.current), []);
  const save = (v: number) => {
    clearTimeout(timer.current);
    if (v !== control.targetShare) void update({ targetShare: v });
  };
  const c = control.calibration;
  return (
    <>
      <label htmlFor="share-slider">
        Cloud ≈{" "}
        <output className="tau-value" data-testid="share-value" htmlFor="share-slider">
          {formatPercent(draft)}
        </output>
      </label>
      <input
        id="share-slider"
        data-testid="share-slider"
        type="range"
        min={0}
        max={MAX_SHARE}
        step={0.01}
        value={Math.min(draft, MAX_SHARE)}
        onChange={(e) => {
          const v = Number(e.target.value);
          setDraft(v);
          clearTimeout(timer.current);
          timer.current = setTimeout(() => save(v), SAVE_AFTER_MS);
        }}
        onPointerUp={() => save(draft)}
        onBlur={() => save(draft)}
        aria-label="about this share of each answer comes from the cloud"
        aria-describedby="tau-help"
      />
      <span
        className="tau-share"
        data-testid="share-tau"
        title={`the τ that sends this share of the router's ${c.scores} recent scores to the cloud; the engine re-calibrates it as each answer goes`}
      >
        {c.tauForTarget === null ? "τ set at the first answer" : `τ ≈ ${c.tauForTarget.toFixed(2)}`}
      </span>
    </>
  );
}

function TauSlider(props: { control: CloudControlView | null; fallbackShare: number | null }) {
  const { controller } = useApp();
  const tau = useSlice(
    (s) => s.session,
    (s) => s.tau,
  );
  // the engine's calibration (the router's recent scores, from a short local answer at load on): the
  // same number as the Cloud panel's; the answers shown here only when the engine has none
  const calibrated = props.control?.calibration.shareAtTau ?? null;
  const share = calibrated ?? props.fallbackShare;
  return (
    <>
      <label htmlFor="tau-slider">
        τ{" "}
        <span className="tau-value" data-testid="tau-value">
          {tau.toFixed(2)}
        </span>
      </label>
      <input
        id="tau-slider"
        data-testid="tau-slider"
        type="range"
        min={0}
        max={1}
        step={0.01}
        value={tau}
        onChange={(e) => void controller.setTau(Number(e.target.value))}
        aria-label="τ: the router sends a token to the cloud when its score is below τ"
        aria-describedby="tau-help"
      />
      <span
        className="tau-share"
        data-testid="tau-share"
        title={
          calibrated !== null
            ? "share of the router's recent scores below this τ (its calibration: your recent answers, and a short local answer scored when the model loaded)"
            : "share of the tokens of your recent answers whose router score is below this τ"
        }
      >
        {share === null ? "cloud share: after a first answer" : `≈${formatPercent(share)} cloud at this τ`}
      </span>
    </>
  );
}
