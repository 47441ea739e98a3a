/**
 * First run: no local model yet. Pick one from the catalogue (its licence shown, and accepted first when
 * it restricts use; download with progress, cancel, retry) or open a GGUF already on disk. Each card
 * keeps its size while its state changes; a failed download says why at once, with Retry.
 */
import { useEffect, useState } from "react";
import type { CatalogueItem, DownloadState } from "../../shared/bridge";
import { useApp, useSlice } from "../context";

const mb = (n: number) => `${(n / 1e6).toFixed(n < 1e8 ? 1 : 0)} MB`;
/** licences that need no acceptance step (permissive, no use restriction) */
const PERMISSIVE = /^(apache-2\.0|mit|bsd)/i;
export const needsAcceptance = (license: string | undefined): boolean => !!license && !PERMISSIVE.test(license.trim());

export function ModelSetup() {
  const { controller } = useApp();
  const models = useSlice(
    (s) => s.session,
    (s) => s.models,
  );
  const [items, setItems] = useState<CatalogueItem[]>([]);
  const [gguf, setGguf] = useState("");
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    controller.catalogue().then(setItems, (e: Error) => setError(e.message));
  }, [controller]);

  const dl = models?.download ?? null;
  const downloading = dl?.status === "downloading";
  const act = (f: () => Promise<void>) => {
    setError(null);
    f().catch((e: Error) => setError(e.message));
  };

  return (
    <section className="model-setup" data-testid="model-setup">
      <h2>Choose the model that runs on this computer</h2>
      <p className="muted">It writes every answer; the cloud model only steps in for the tokens it is unsure of.</p>
      <ul className="catalogue">
        {items.map((m) => (
          <CatalogueCard key={m.id} item={m} mine={dl?.id === m.id ? dl : null} busy={downloading} act={act} />
        ))}
      </ul>
      <div className="open-local">
        <input
          value={gguf}
          aria-label="path of a GGUF file"
          placeholder="or a GGUF file on this computer: /path/to/model.gguf"
          onChange={(e) => setGguf(e.target.value)}
        />
        <button disabled={!gguf.trim() || downloading} onClick={() => act(() => controller.openLocalModel(gguf.trim()))}>
          Open
        </button>
        {window.tandem && (
          <button disabled={downloading} onClick={() => act(async () => void (await controller.chooseLocalModel()))}>
            Choose file…
          </button>
        )}
      </div>
      {(error ?? models?.slm.error) && (
        <p className="error" data-testid="model-error" role="alert">
          {error ?? models?.slm.error}
        </p>
      )}
    </section>
  );
}

const STALL_SECONDS = 8;

/** True while a running download has received nothing for STALL_SECONDS (offline: the engine may wait much longer). */
function useStalled(running: boolean, bytes: number): boolean {
  const [stalled, setStalled] = useState(false);
  useEffect(() => {
    setStalled(false);
    if (!running) return;
    const t = setTimeout(() => setStalled(true), STALL_SECONDS * 1000);
    return () => clearTimeout(t);
  }, [running, bytes]);
  return stalled;
}

function CatalogueCard({
  item: m,
  mine,
  busy,
  act,
}: {
  item: CatalogueItem;
  mine: DownloadState | null;
  busy: boolean;
  act: (f: () => Promise<void>) => void;
}) {
  const { controller } = useApp();
  const [accepting, setAccepting] = useState(false);
  const [accepted, setAccepted] = useState(false);
  const frac = mine && mine.totalBytes ? mine.downloadedBytes / mine.totalBytes : 0;
  const running = mine?.status === "downloading";
  const failed = mine?.status === "error";
  const start = () => {
    if (needsAcceptance(m.license) && !accepted) setAccepting(true);
    else act(() => controller.downloadModel(m.id));
  };
  const label = failed ? "Retry" : mine?.status === "cancelled" ? "Resume" : "Download";
  const stalled = useStalled(running, mine?.downloadedBytes ?? 0);
  return (
    <li data-testid={`catalogue-${m.id}`} className="catalogue-card">
      <div className="catalogue-name">
        {m.name} {m.recommended && <span className="badge">recommended</span>}
        <span className="muted"> · {mb(m.sizeBytes)}</span>
        {m.license && (
          <div className={`licence small ${needsAcceptance(m.license) ? "licence-restricted" : "muted"}`} data-testid="licence">
            Licence: {m.license}
          </div>
        )}
      </div>
      {running ? (
        <button className="card-button" onClick={() => act(() => controller.cancelDownload())}>
          Cancel
        </button>
      ) : (
        <button className="card-button" data-testid="download" disabled={busy || accepting} onClick={start}>
          {label}
        </button>
      )}
      {accepting && (
        <div className="licence-accept" data-testid="licence-accept" role="group" aria-label="licence">
          <span>
            This model's weights are under the <strong>{m.license}</strong>, which restricts how it may be used. Download only if your use
            is allowed.
          </span>
          <span className="licence-actions">
            <button
              data-testid="licence-agree"
              onClick={() => {
                setAccepted(true);
                setAccepting(false);
                act(() => controller.downloadModel(m.id));
              }}
            >
              Accept and download
            </button>
            <button onClick={() => setAccepting(false)}>Cancel</button>
          </span>
        </div>
      )}
      {/* always there, so the card does not jump as the download starts, fails or ends */}
      <div
        className={`progress${mine && mine.status !== "done" ? "" : " idle"}`}
        role="progressbar"
        aria-label={`${m.name} download`}
        aria-valuenow={Math.round(frac * 100)}
        aria-valuemin={0}
        aria-valuemax={100}
      >
        <div style={{ width: `${(frac * 100).toFixed(1)}%` }} />
        <span>
          {running
            ? mine.totalBytes
              ? `${(frac * 100).toFixed(0)}% · ${mb(mine.downloadedBytes)} of ${mb(mine.totalBytes)}`
              : "connecting…"
            : mine?.status === "cancelled"
              ? "cancelled — the partial file is kept"
              : ""}
        </span>
      </div>
      {running && stalled && (
        <p className="error download-error" data-testid="download-stalled" role="alert">
          No data from the download server for {STALL_SECONDS} s: this computer may be offline, or the server unreachable. Cancel, then
          Resume once connected.
        </p>
      )}
      {failed && (
        <p className="error download-error" data-testid="download-error" role="alert">
          Download failed: {mine.error ?? "unknown error"}
        </p>
      )}
    </li>
  );
}
