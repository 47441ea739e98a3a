/**
 * The token inspector: origin, the router's score against τ (which router, and what its score means),
 * the SLM's candidates (computed on demand for the pinned token), the cloud's verdict, latency.
 * A side panel when the window is wide; a bottom drawer when narrow, open while a token is pinned.
 */
import { useEffect, useState } from "react";
import type { StoredMessage } from "../../shared/bridge";
import type { Candidate, TokenEvent } from "../../shared/events";
import { useApp, useSlice } from "../context";
import { selectInspected } from "../state/stores";
import { ORIGIN_HELP } from "./Legend";
import { VisibleText, visibleText } from "./VisibleText";
import { describeSettings } from "../../shared/samplingText";

/** What a router's score means, in one line (shown under the score). */
export function routerMeaning(router: string): string {
  if (router.startsWith("confidence")) return "the small model's own probability for the token it would write";
  if (router.startsWith("distilled")) return "a prediction of the small model's probability for its token, read from its hidden state";
  return "a learned estimate, from the small model's state, that its token is as good as the large model's";
}

export function Inspector() {
  const { stores } = useApp();
  const ref = useSlice((s) => s.ui, selectInspected);
  const pinned = useSlice(
    (s) => s.ui,
    (s) => s.pinned,
  );
  // messages are replaced, never mutated: this selects a stable object while others stream in
  const message: StoredMessage | undefined = useSlice(
    (s) => s.chat,
    (c) => (ref && c.activeId ? c.loaded[c.activeId]?.messages.find((x) => x.id === ref.messageId) : undefined),
  );
  const t: TokenEvent | undefined = ref ? message?.tokens?.[ref.index] : undefined;
  const router = useSlice(
    (s) => s.session,
    (s) => s.models?.router ?? "",
  );
  const close = () => stores.ui.setState({ pinned: null, hovered: null });
  return (
    <aside className={`inspector${pinned && t ? " open" : ""}`} data-testid="inspector" aria-label="token inspector">
      <div className="insp-head">
        <h2>Token inspector</h2>
        {pinned && (
          <button
            className="icon-button"
            data-testid="inspector-close"
            onClick={close}
            aria-label="close the inspector (Esc)"
            title="close (Esc)"
          >
            ×
          </button>
        )}
      </div>
      {!t || !message ? (
        <p className="muted">Hover over a token to see why it was chosen; click it (or focus the answer and use ← →) to pin it.</p>
      ) : (
        <TokenDetails
          t={t}
          message={message}
          router={message.summary?.router ?? router}
          pinned={pinned?.messageId === message.id && pinned.index === t.index}
        />
      )}
      <div className="sr-only" aria-live="polite" data-testid="inspector-live">
        {t && pinned
          ? `Token ${t.index + 1} of ${message?.tokens?.length ?? 0}, “${visibleText(t.text)}”, ${t.origin}, score ${t.confidence.toFixed(2)} against τ ${t.tau.toFixed(2)}`
          : ""}
      </div>
    </aside>
  );
}

function slmText(t: TokenEvent, cands: Candidate[] | undefined) {
  const c = cands?.find((x) => x.tokenId === t.slmTokenId);
  return c?.text ? (
    <>
      “<VisibleText text={c.text} />” (token {t.slmTokenId})
    </>
  ) : (
    `token ${t.slmTokenId}`
  );
}

/** Candidates for the pinned token of a finished answer, asked of the engine once per token. */
function useOnDemandCandidates(message: StoredMessage, t: TokenEvent, pinned: boolean) {
  const { controller } = useApp();
  const [state, setState] = useState<{ key: string; list?: Candidate[]; error?: string } | null>(null);
  const key = `${message.id}#${t.index}`;
  const wanted = pinned && !!message.status;
  useEffect(() => {
    if (!wanted) return;
    let live = true;
    setState({ key });
    controller.candidates({ messageId: message.id, index: t.index }).then(
      (list) => live && setState({ key, list }),
      (e: Error) => live && setState({ key, error: e.message }),
    );
    return () => {
      live = false;
    };
  }, [controller, key, wanted, message.id, t.index]);
  return state?.key === key ? state : null;
}

function TokenDetails({ t, message, router, pinned }: { t: TokenEvent; message: StoredMessage; router: string; pinned: boolean }) {
  const routed = t.confidence < t.tau;
  const onDemand = useOnDemandCandidates(message, t, pinned);
  const cands = onDemand?.list?.length ? onDemand.list : t.slmTop;
  return (
    <div className="token-details" data-testid="token-details" data-origin={t.origin} data-index={t.index}>
      <div className="insp-token">
        <span className={`tok origin-${t.origin}`}>{t.text ? <VisibleText text={t.text} /> : "∅"}</span>
        <span className={`origin-tag origin-${t.origin}`} data-testid="insp-origin">
          {t.origin}
        </span>
      </div>
      <p className="muted small">{ORIGIN_HELP[t.origin]}</p>
      {!t.text && (
        <p className="muted small">
          This token has no text of its own: it ends inside a character (or a possible stop word) whose text comes with a later token.
        </p>
      )}
      <dl>
        <dt>position</dt>
        <dd>
          #{t.index} of {message.tokens?.length ?? 0} · token {t.tokenId}
        </dd>
        <dt>router score</dt>
        <dd data-testid="insp-confidence">
          {t.confidence.toFixed(3)} {routed ? "<" : "≥"} τ {t.tau.toFixed(2)} → {routed ? "ask the cloud" : "keep local"}
        </dd>
        <dd>
          <div className="meter" aria-hidden>
            <div className="meter-fill" style={{ width: `${(t.confidence * 100).toFixed(1)}%` }} />
            <div className="meter-tau" style={{ left: `${(t.tau * 100).toFixed(1)}%` }} />
          </div>
        </dd>
        <dd className="muted small" data-testid="insp-router" title={router}>
          Scored by the <strong>{router.split(" (")[0] || "active"}</strong> router: {routerMeaning(router)}. Below τ, the cloud writes the
          token.
        </dd>
        {t.slmProb !== undefined && (
          <>
            <dt>small model's draw</dt>
            <dd data-testid="insp-slm-prob">
              p {t.slmProb.toFixed(3)} for {t.slmTokenId === t.tokenId ? "this token" : `its own token ${t.slmTokenId}`}, in the
              distribution it was drawn from (after penalties, truncation and temperature)
            </dd>
          </>
        )}
        {t.cloud && (
          <>
            <dt>cloud token</dt>
            <dd data-testid="insp-cloud">
              {t.cloud.tokenId}
              {t.cloud.logprob !== undefined && ` · log p ${t.cloud.logprob.toFixed(3)} (p ${Math.exp(t.cloud.logprob).toFixed(3)})`}
              {t.cloud.fromDraft && " · from the previous call's continuation (no call of its own)"}
            </dd>
          </>
        )}
        {t.origin !== "local" && (
          <>
            <dt>the small model would have written</dt>
            <dd>
              {slmText(t, cands)}
              {t.slmTokenId === t.tokenId ? " (the same)" : ""}
            </dd>
          </>
        )}
        {t.cloudLatencyMs != null && (
          <>
            <dt>cloud latency</dt>
            <dd data-testid="insp-latency">{t.cloudLatencyMs.toFixed(1)} ms</dd>
          </>
        )}
        {t.fallbackReason && (
          <>
            <dt>fallback because</dt>
            <dd>{t.fallbackReason}</dd>
          </>
        )}
        {message.sampling && (
          <>
            <dt>the answer was sampled with</dt>
            <dd data-testid="insp-sampling">{describeSettings(message.sampling)}</dd>
          </>
        )}
      </dl>
      <Candidates t={t} cands={cands} onDemand={onDemand} pinned={pinned} live={!message.status} />
    </div>
  );
}

function Candidates({
  t,
  cands,
  onDemand,
  pinned,
  live,
}: {
  t: TokenEvent;
  cands?: Candidate[];
  onDemand: { list?: Candidate[]; error?: string } | null;
  pinned: boolean;
  live: boolean;
}) {
  if (!cands?.length) {
    const why =
      onDemand?.error ??
      (onDemand
        ? "computing the candidates…"
        : live
          ? "candidates can be computed once the answer ends: pin the token then"
          : pinned
            ? "computing the candidates…"
            : "click the token to compute its candidates");
    return (
      <p className="muted small" data-testid="insp-candidates-note">
        Small model's candidates: {why}
      </p>
    );
  }
  return (
    <>
      <h3>Small model's top candidates</h3>
      <table className="cands" data-testid="insp-candidates">
        <tbody>
          {cands.map((c) => (
            <tr key={c.tokenId} className={c.tokenId === t.tokenId ? "chosen" : ""}>
              <td className="cand-text">{c.text ? <VisibleText text={c.text} /> : `#${c.tokenId}`}</td>
              <td className="cand-bar">
                <div style={{ width: `${(c.prob * 100).toFixed(1)}%` }} />
              </td>
              <td className="num">{(c.prob * 100).toFixed(1)}%</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted small">␣ a space, ↵ a new line, → a tab.</p>
    </>
  );
}
