/** ‹ k/n ›: moves between the versions of one point of the conversation (a regenerated answer, an edited message). */
export function VersionSwitch({
  version,
  count,
  onSelect,
  disabled,
}: {
  version: number;
  count: number;
  onSelect: (k: number) => void;
  disabled: boolean;
}) {
  return (
    <span className="versions" data-testid="versions">
      <button
        type="button"
        className="link"
        data-testid="version-prev"
        aria-label="previous version"
        disabled={disabled || version === 0}
        onClick={() => onSelect(version - 1)}
      >
        ‹
      </button>
      <span data-testid="version-label" aria-label={`version ${version + 1} of ${count}`}>
        {version + 1}/{count}
      </span>
      <button
        type="button"
        className="link"
        data-testid="version-next"
        aria-label="next version"
        disabled={disabled || version === count - 1}
        onClick={() => onSelect(version + 1)}
      >
        ›
      </button>
    </span>
  );
}
