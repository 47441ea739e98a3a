/** Router confidence along the answer, the τ line in force, and the cloud / fallback tokens marked. */
import type { StoredMessage } from "../../shared/bridge";

const W = 560;
const H = 64;

export function ConfidenceChart({ message }: { message: StoredMessage }) {
  const tokens = message.tokens ?? [];
  const n = tokens.length;
  const x = (i: number) => (n <= 1 ? 0 : (i / (n - 1)) * W);
  const y = (c: number) => H - 2 - c * (H - 4);
  const line = tokens.map((t, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(t.confidence).toFixed(1)}`).join("");
  // τ may change mid-answer: draw it as a step line through each token's own τ
  const tauLine = tokens.map((t, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(t.tau).toFixed(1)}`).join("");
  return (
    <svg className="chart" data-testid="confidence-chart" viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label="router confidence along the answer">
      <path d={line} className="chart-conf" vectorEffect="non-scaling-stroke" />
      <path d={tauLine} className="chart-tau" vectorEffect="non-scaling-stroke" />
      {tokens.map((t, i) =>
        t.origin === "local" ? null : <circle key={i} cx={x(i)} cy={y(t.confidence)} r={2.2} className={`chart-dot origin-${t.origin}`} />,
      )}
    </svg>
  );
}
