/** Always in view: τ slider with the cloud share it produces, the cloud indicator, the models, the legend. */
import { useApp, useSlice } from "../context";
import { selectActiveConversation } from "../state/chatReducer";
import { formatPercent, routedShareAt } from "../state/answerStats";
import { Legend } from "./Legend";
import type { Conversation, StoredMessage } from "../../shared/bridge";

function lastAnswer(c: Conversation | null): StoredMessage | null {
  if (!c) return null;
  for (let i = c.messages.length - 1; i >= 0; i--) if (c.messages[i].role === "assistant" && c.messages[i].tokens?.length) return c.messages[i];
  return null;
}

export function TopBar() {
  const { controller } = useApp();
  const tau = useSlice((s) => s.session, (s) => s.tau);
  const answer = useSlice((s) => s.chat, (s) => lastAnswer(selectActiveConversation(s)));
  const tokens = answer?.tokens ?? [];
  const actual = tokens.length ? tokens.filter((t) => t.origin === "cloud").length / tokens.length : null;
  const estimate = tokens.length ? routedShareAt(tokens, tau) : null;
  return (
    <header className="topbar">
      <div className="tau" data-testid="tau">
        <label htmlFor="tau-slider">
          τ <span className="tau-value" data-testid="tau-value">{tau.toFixed(2)}</span>
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
          aria-label="τ: the router sends a token to the cloud when its confidence is below τ"
        />
        <span className="tau-share" data-testid="tau-share" title="cloud share of the last answer; in brackets, what this τ would route on it">
          {actual === null ? "no answer yet" : `${formatPercent(actual)} cloud`}
          {estimate !== null && <span className="muted"> (≈{formatPercent(estimate)} at this τ)</span>}
        </span>
      </div>
      <Legend />
      <div className="status">
        <CloudIndicator />
      </div>
    </header>
  );
}

/** The models and the router, one line per stage, at the foot of the sidebar. */
export function ModelStatusPanel() {
  const models = useSlice((s) => s.session, (s) => s.models);
  if (!models) return null;
  const line = (label: string, st: typeof models.slm) => {
    const text = st.error ? st.error : st.loaded ? st.name : st.progress != null ? `downloading ${formatPercent(st.progress)}` : st.source ? "loading…" : "—";
    return (
      <div className={`model-line ${st.error ? "bad" : ""}`} title={st.source ?? ""}>
        <span className="model-label">{label}</span> <span className="model-name">{text}</span>
      </div>
    );
  };
  return (
    <div className="models" data-testid="model-status">
      {line("device", models.slm)}
      {(models.llm.source || models.llm.error) && line("cloud", models.llm)}
      <div className="model-line" title={models.router}>
        <span className="model-label">router</span> <span className="model-name">{models.router}</span>
      </div>
    </div>
  );
}

export function CloudIndicator() {
  const cloud = useSlice((s) => s.session, (s) => s.cloud);
  const state = cloud?.state ?? "unknown";
  const label =
    state === "online" ? "cloud online" : state === "offline" ? "cloud offline — answering locally" : state === "disabled" ? "no cloud — local only" : "connecting…";
  // why the cloud is offline (a refused token, an invalid URL, another vocabulary) is shown, not only
  // hovered: it is what the user has to fix
  const why = state === "offline" && cloud?.detail ? cloud.detail : null;
  return (
    <>
      <span className={`cloud-indicator cloud-${state}`} data-testid="cloud-indicator" data-state={state} title={[cloud?.model, cloud?.detail].filter(Boolean).join(" — ") || cloud?.url || ""}>
        <span className="dot" /> {label}
      </span>
      {why && (
        <span className="cloud-detail" data-testid="cloud-detail" title={why}>
          {why}
        </span>
      )}
    </>
  );
}
