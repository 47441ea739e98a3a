/**
 * The cloud, under the user's control: what the top bar's share (or τ) means on the router's recent
 * scores, budgets, local-only conversations, and what the cloud has seen of this conversation, with
 * Forget.
 */
import { useCallback, useEffect, useState } from "react";
import type { CloudControlView, CloudSeenView, ControlPatch } from "../../shared/cloudControl";
import { errorMessage } from "../../shared/errors.js";
import { useApp, useSlice } from "../context";
import { useCloudControl } from "../state/useCloudControl";

const pct = (x: number) => `${Math.round(x * 1000) / 10}%`;

export function CloudPanel() {
  const { bridge, stores } = useApp();
  const activeId = useSlice(
    (s) => s.chat,
    (s) => s.activeId,
  );
  const tau = useSlice(
    (s) => s.session,
    (s) => s.tau,
  );
  // the controls as the engine has them: the same state the top bar's estimate reads
  const control = useCloudControl(tau);
  const [seen, setSeen] = useState<CloudSeenView | null>(null);
  const note = useCallback((m: string) => stores.session.setState((s) => ({ notices: [...s.notices, m] })), [stores]);

  useEffect(() => {
    if (!bridge) return;
    return bridge.subscribe((e) => {
      if (e.type === "cloud-seen") setSeen((s) => (s === null || e.seen.conversationId === s.conversationId ? e.seen : s));
    });
  }, [bridge]);
  useEffect(() => {
    if (!bridge || !activeId) return setSeen(null);
    void bridge.cloudSeen({ conversationId: activeId }).then(setSeen, () => setSeen(null));
  }, [bridge, activeId]);

  if (!bridge || !control) return null;
  const update = (patch: ControlPatch) =>
    bridge.updateCloudControl(patch).then(
      () => {}, // the engine's cloud-control event carries the new controls to every view
      (e: unknown) => note(`Cloud controls: ${errorMessage(e)}`),
    );
  const budgetHit = budgetReached(control, seen);
  return (
    <details className="cloud-panel" data-testid="cloud-panel">
      <summary>
        Cloud: {control.targetShare === null ? `τ ${tau.toFixed(2)}` : `about ${pct(control.targetShare)} of each answer`}
        {seen?.localOnly && " · this conversation is local-only"}
        {budgetHit && " · budget reached"}
      </summary>
      {budgetHit && (
        <p className="cloud-budget-notice" role="status" data-testid="budget-notice">
          {budgetHit} Answers go on with the local model (tokens marked fallback, “budget”). Raise or clear the cap under Budgets to use the
          cloud again.
        </p>
      )}
      <ShareExplained control={control} tau={tau} />
      <Budgets control={control} update={update} />
      <label className="cloud-row">
        <input
          type="checkbox"
          data-testid="local-only-default"
          checked={control.localOnlyDefault}
          onChange={(e) => void update({ localOnlyDefault: e.target.checked })}
        />
        New conversations are local-only
      </label>
      {seen && activeId && <SeenPanel seen={seen} setSeen={setSeen} conversationId={activeId} note={note} />}
    </details>
  );
}

/** What the top bar's control means on the router's recent scores (the calibration behind it). */
function ShareExplained(props: { control: CloudControlView; tau: number }) {
  const { control, tau } = props;
  const c = control.calibration;
  const target = control.targetShare;
  let text: string;
  if (target !== null)
    text =
      `Set in the top bar: about ${pct(target)} of each answer; τ is calibrated from the router's recent scores as the answer goes` +
      (c.tauForTarget === null
        ? " (once it has scored an answer)."
        : `: ${pct(target)} is τ ≈ ${c.tauForTarget.toFixed(2)} on ${c.scores} of them.`);
  else
    text =
      `Set in the top bar: τ (advanced; switch it to Share for about a fixed part of each answer). ` +
      (c.shareAtTau === null
        ? "The share a τ gives is shown once the router has scored an answer."
        : `τ ${tau.toFixed(2)} would send ≈${pct(c.shareAtTau)} of the tokens to the cloud (from ${c.scores} recent router scores).`);
  return (
    <p className="cloud-muted" data-testid="share-expected">
      {text}
    </p>
  );
}

function Budgets(props: { control: CloudControlView; update: (p: ControlPatch) => Promise<void> }) {
  const b = props.control.budgets;
  const [conv, setConv] = useState(b.conversationTokens?.toString() ?? "");
  const [day, setDay] = useState(b.dayTokens?.toString() ?? "");
  const [bytes, setBytes] = useState(b.dayBytesUp?.toString() ?? "");
  const cap = (v: string) => (v.trim() === "" ? null : Math.max(0, Math.floor(Number(v))));
  const u = props.control.usageToday;
  return (
    <fieldset className="cloud-budgets" data-testid="budgets">
      <legend>Budgets (empty: no cap)</legend>
      <label>
        Cloud tokens per conversation
        <input inputMode="numeric" data-testid="budget-conversation" value={conv} onChange={(e) => setConv(e.target.value)} />
      </label>
      <label>
        Cloud tokens per day{" "}
        <span className="cloud-muted" data-testid="usage-today">
          (today {u.cloudTokens})
        </span>
        <input inputMode="numeric" data-testid="budget-day" value={day} onChange={(e) => setDay(e.target.value)} />
      </label>
      <label>
        Bytes sent per day <span className="cloud-muted">(today {u.bytesUp})</span>
        <input inputMode="numeric" data-testid="budget-bytes" value={bytes} onChange={(e) => setBytes(e.target.value)} />
      </label>
      <button
        data-testid="budget-save"
        onClick={() => void props.update({ budgets: { conversationTokens: cap(conv), dayTokens: cap(day), dayBytesUp: cap(bytes) } })}
      >
        Save budgets
      </button>
    </fieldset>
  );
}

function SeenPanel(props: { seen: CloudSeenView; conversationId: string; setSeen: (s: CloudSeenView) => void; note: (m: string) => void }) {
  const { bridge } = useApp();
  const { seen, conversationId, setSeen, note } = props;
  const [busy, setBusy] = useState(false);
  const act = async (f: () => Promise<CloudSeenView>) => {
    setBusy(true);
    try {
      setSeen(await f());
    } catch (e) {
      note(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="cloud-seen" data-testid="cloud-seen" aria-label="what the cloud has seen of this conversation">
      <label className="cloud-row">
        <input
          type="checkbox"
          data-testid="local-only-toggle"
          checked={seen.localOnly}
          disabled={busy}
          onChange={(e) => void act(() => bridge!.setLocalOnly({ conversationId, localOnly: e.target.checked }))}
        />
        Local-only: nothing of this conversation leaves this computer (no session, no sync, no call)
      </label>
      <h3>What the cloud has seen of this conversation</h3>
      {seen.tokensUp === 0 ? (
        <p data-testid="seen-summary">Nothing: no token of this conversation has been sent to the cloud.</p>
      ) : (
        <p data-testid="seen-summary">
          {seen.tokensUp} tokens sent — the whole conversation so far is synced to the cloud as token IDs, although the cloud writes only a
          few tokens: {seen.cloudTokens} here. {seen.bytesUp} B up, {seen.bytesDown} B down; server {seen.server ?? "—"}, model{" "}
          {seen.model ?? "—"}.
        </p>
      )}
      {seen.forgottenAt !== null && (
        <p className="cloud-muted" data-testid="seen-forgotten">
          The server confirmed it deleted its copy at {new Date(seen.forgottenAt).toLocaleTimeString()}.
        </p>
      )}
      <button
        data-testid="cloud-forget"
        disabled={busy || seen.sessionId === null}
        onClick={() => void act(() => bridge!.forgetCloud({ conversationId }))}
        title="the server deletes its copy of this conversation and confirms it"
      >
        Forget
      </button>
    </section>
  );
}

/** Which cap stops the cloud for this conversation now, in words (null: none). */
function budgetReached(c: CloudControlView, seen: CloudSeenView | null): string | null {
  const b = c.budgets;
  if (seen && b.conversationTokens !== null && seen.cloudTokens >= b.conversationTokens)
    return `This conversation's cloud budget (${b.conversationTokens} tokens) is used up.`;
  if (b.dayTokens !== null && c.usageToday.cloudTokens >= b.dayTokens) return `Today's cloud budget (${b.dayTokens} tokens) is used up.`;
  if (b.dayBytesUp !== null && c.usageToday.bytesUp >= b.dayBytesUp) return `Today's upload budget (${b.dayBytesUp} bytes) is used up.`;
  return null;
}
