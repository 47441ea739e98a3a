/** The token inspector: origin, confidence against τ, the SLM's candidates, the cloud's verdict, latency. */
import type { TokenEvent } from "../../shared/events";
import { useSlice } from "../context";
import { selectInspected } from "../state/stores";
import { ORIGIN_HELP } from "./Legend";

function show(text: string): string {
  // whitespace made visible, so " the" and "the" are told apart
  return JSON.stringify(text).slice(1, -1).replace(/ /g, "␣");
}

export function Inspector() {
  const ref = useSlice((s) => s.ui, selectInspected);
  // token events are never mutated, so this selects a stable object: no re-render while others stream in
  const t: TokenEvent | undefined = useSlice(
    (s) => s.chat,
    (c) => (ref && c.activeId ? c.loaded[c.activeId]?.messages.find((x) => x.id === ref.messageId)?.tokens?.[ref.index] : undefined),
  );
  return (
    <aside className="inspector" data-testid="inspector" aria-label="token inspector">
      <h2>Token inspector</h2>
      {!t ? (
        <p className="muted">Hover over a token to see why it was chosen; click to pin it.</p>
      ) : (
        <TokenDetails t={t} />
      )}
    </aside>
  );
}

function slmText(t: TokenEvent): string {
  const c = t.slmTop?.find((x) => x.tokenId === t.slmTokenId);
  return c?.text !== undefined && c.text !== "" ? `“${show(c.text)}” (token ${t.slmTokenId})` : `token ${t.slmTokenId}`;
}

function TokenDetails({ t }: { t: TokenEvent }) {
  const routed = t.confidence < t.tau;
  return (
    <div className="token-details" data-testid="token-details" data-origin={t.origin}>
      <div className="insp-token">
        <span className={`tok origin-${t.origin}`}>{show(t.text) || "∅"}</span>
        <span className={`origin-tag origin-${t.origin}`} data-testid="insp-origin">
          {t.origin}
        </span>
      </div>
      <p className="muted small">{ORIGIN_HELP[t.origin]}</p>
      <dl>
        <dt>position</dt>
        <dd>#{t.index} · token {t.tokenId}</dd>
        <dt>confidence</dt>
        <dd data-testid="insp-confidence">
          {t.confidence.toFixed(3)} {routed ? "<" : "≥"} τ {t.tau.toFixed(2)} → {routed ? "ask the cloud" : "keep local"}
        </dd>
        <dd>
          <div className="meter">
            <div className="meter-fill" style={{ width: `${(t.confidence * 100).toFixed(1)}%` }} />
            <div className="meter-tau" style={{ left: `${(t.tau * 100).toFixed(1)}%` }} />
          </div>
        </dd>
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
            <dt>SLM would have said</dt>
            <dd>
              {slmText(t)}
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
      </dl>
      {!t.slmTop?.length && <p className="muted small">SLM candidates are not computed for large vocabularies: they would slow every token.</p>}
      {t.slmTop && t.slmTop.length > 0 && (
        <>
          <h3>SLM top candidates</h3>
          <table className="cands" data-testid="insp-candidates">
            <tbody>
              {t.slmTop.map((c) => (
                <tr key={c.tokenId} className={c.tokenId === t.tokenId ? "chosen" : ""}>
                  <td className="cand-text">{show(c.text ?? "") || `#${c.tokenId}`}</td>
                  <td className="cand-bar">
                    <div style={{ width: `${(c.prob * 100).toFixed(1)}%` }} />
                  </td>
                  <td className="num">{(c.prob * 100).toFixed(1)}%</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
