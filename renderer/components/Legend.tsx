import type { Origin } from "../../shared/events";

export const ORIGIN_LABEL: Record<Origin, string> = { local: "local", cloud: "cloud", fallback: "fallback" };
export const ORIGIN_HELP: Record<Origin, string> = {
  local: "chosen by the small model on this computer",
  cloud: "chosen by the large model in the cloud",
  fallback: "the cloud was asked but did not answer in time: the local model's token",
};

export function Legend() {
  return (
    <div className="legend" aria-label="token origins">
      {(Object.keys(ORIGIN_LABEL) as Origin[]).map((o) => (
        <span key={o} className="legend-item" title={ORIGIN_HELP[o]}>
          <span className={`swatch origin-${o}`} /> {ORIGIN_LABEL[o]}
        </span>
      ))}
    </div>
  );
}
