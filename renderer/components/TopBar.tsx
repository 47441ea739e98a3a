/**
 * Always in view, on one row: how much comes from the cloud (a target share, or τ with the share it
 * gives: ShareControl.tsx), the legend, the cloud indicator, and a menu for what does not fit
 * (display settings, the full legend, why the cloud is offline).
 */
import { useApp, useSlice } from "../context";
import { formatPercent, routedShareAt } from "../state/answerStats";
import { ShareControl } from "./ShareControl";
import type { ChatState } from "../state/chatReducer";
import { THEMES, type Theme } from "../state/stores";
import { Legend } from "./Legend";
import type { CloudStatus, ModelStatus } from "../../shared/bridge";
import type { TokenEvent } from "../../shared/events";

/** Router scores of the most recent answers the renderer holds (any conversation): what a τ is estimated on. */
const RECENT = 2000;
function recentScores(s: ChatState): TokenEvent[] {
  const convs = Object.values(s.loaded).sort((a, b) => b.updatedAt - a.updatedAt);
  const out: TokenEvent[] = [];
  for (const c of convs)
    for (let i = c.messages.length - 1; i >= 0 && out.length < RECENT; i--) {
      const t = c.messages[i].tokens;
      if (c.messages[i].role === "assistant" && t?.length && c.messages[i].status) out.push(...t.slice(0, RECENT - out.length));
    }
  return out;
}

/** One wording of the cloud's state, used by the indicator and the sidebar alike. */
export function cloudLabel(cloud: CloudStatus | null): string {
  switch (cloud?.state) {
    case "online":
      return "cloud online";
    case "offline":
      return "cloud offline — answering locally";
    case "disabled":
      return "no cloud — local only";
    default:
      return "connecting…";
  }
}

export function TopBar() {
  const tau = useSlice(
    (s) => s.session,
    (s) => s.tau,
  );
  const recent = useSlice(
    (s) => s.chat,
    (s) => {
      const scores = recentScores(s);
      return scores.length ? Math.round(routedShareAt(scores, tau) * 1000) / 1000 : null;
    },
  );
  return (
    <header className="topbar">
      <ShareControl fallbackShare={recent} />
      <Legend />
      <div className="status">
        <CloudIndicator />
      </div>
      <MoreMenu />
    </header>
  );
}

function MoreMenu() {
  const { stores, controller } = useApp();
  const showOrigins = useSlice(
    (s) => s.ui,
    (s) => s.showOrigins,
  );
  const theme = useSlice(
    (s) => s.ui,
    (s) => s.theme,
  );
  const cloud = useSlice(
    (s) => s.session,
    (s) => s.cloud,
  );
  return (
    <details className="menu" data-testid="menu">
      <summary aria-label="display settings and more" title="display settings and more">
        ⋯
      </summary>
      <div className="menu-panel">
        <label className="menu-row">
          <input
            type="checkbox"
            data-testid="origins-toggle"
            checked={showOrigins}
            onChange={(e) => stores.ui.setState({ showOrigins: e.target.checked })}
          />
          Colour tokens by origin
        </label>
        <label className="menu-row">
          Theme
          <select
            data-testid="theme-select"
            value={theme}
            onChange={(e) => {
              const theme = e.target.value as Theme;
              stores.ui.setState({ theme });
              void controller.updateSettings({ theme }).catch(() => {}); // kept for this session in any case
            }}
          >
            {THEMES.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <Legend long />
        {cloud?.state === "offline" && cloud.detail && <p className="menu-note bad-text">{cloud.detail}</p>}
      </div>
    </details>
  );
}

/** The models and the router, one line per stage, at the foot of the sidebar. */
export function ModelStatusPanel() {
  const models = useSlice(
    (s) => s.session,
    (s) => s.models,
  );
  const cloud = useSlice(
    (s) => s.session,
    (s) => s.cloud,
  );
  if (!models) return null;
  const line = (label: string, st: ModelStatus["slm"]) => {
    const text = st.error
      ? st.error
      : st.loaded
        ? st.name
        : st.progress != null
          ? `downloading ${formatPercent(st.progress)}`
          : st.source
            ? "loading…"
            : "—";
    return (
      <div className={`model-line ${st.error ? "bad" : ""}`} title={st.source ?? ""}>
        <span className="model-label">{label}</span> <span className="model-name">{text}</span>
      </div>
    );
  };
  // the cloud line says what the indicator says: a model only while the cloud is online
  const cloudText = cloud?.state === "online" ? (cloud.model ?? models.llm.name ?? "online") : cloudLabel(cloud);
  return (
    <div className="models" data-testid="model-status">
      {line("device", models.slm)}
      <div className={`model-line ${cloud?.state === "offline" ? "bad" : ""}`} title={cloud?.url ?? ""} data-testid="model-status-cloud">
        <span className="model-label">cloud</span> <span className="model-name">{cloudText}</span>
      </div>
      <div className="model-line" title={models.router}>
        <span className="model-label">router</span> <span className="model-name">{models.router}</span>
      </div>
    </div>
  );
}

export function CloudIndicator() {
  const cloud = useSlice(
    (s) => s.session,
    (s) => s.cloud,
  );
  const state = cloud?.state ?? "unknown";
  // why the cloud is offline (a refused token, an invalid URL, another vocabulary) is shown, not only
  // hovered: it is what the user has to fix (one line here; in full in the menu)
  const why = state === "offline" && cloud?.detail ? cloud.detail : null;
  return (
    <>
      <span
        className={`cloud-indicator cloud-${state}`}
        data-testid="cloud-indicator"
        data-state={state}
        title={[cloud?.model, cloud?.detail].filter(Boolean).join(" — ") || cloud?.url || ""}
      >
        <span className="dot" /> {cloudLabel(cloud)}
      </span>
      {why && (
        <span className="cloud-detail" data-testid="cloud-detail" title={why}>
          {why}
        </span>
      )}
    </>
  );
}
