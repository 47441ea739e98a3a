import type { Origin } from "../../shared/events";

export const ORIGIN_LABEL: Record<Origin, string> = { local: "local", cloud: "cloud", fallback: "fallback" };
export const ORIGIN_HELP: Record<Origin, string> = {
  local: "written by the small model on this computer: the router's score was at or above τ",
  cloud: "written by the large model in the cloud: the router's score was below τ",
  fallback: "the router asked for the cloud, but the cloud was off, unreachable, failed or too slow: the small model's own token was kept",
};

export function Legend({ long = false }: { long?: boolean }) {
  return (
    <div className={`legend${long ? " legend-long" : ""}`} role="list" aria-label="token origins">
      {(Object.keys(ORIGIN_LABEL) as Origin[]).map((o) => (
        <span key={o} role="listitem" className="legend-item" title={ORIGIN_HELP[o]} data-testid={`legend-${o}`}>
          <span className={`swatch origin-${o}`} aria-hidden /> <span className={`legend-name origin-${o}`}>{ORIGIN_LABEL[o]}</span>
          {long && <span className="muted">: {ORIGIN_HELP[o]}</span>}
        </span>
      ))}
    </div>
  );
}
