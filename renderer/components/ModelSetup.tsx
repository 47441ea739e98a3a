/**
 * First run: no local model yet. Pick one from the catalogue (download with progress, cancel, resume)
 * or open a GGUF already on disk. Shown in place of the welcome text until a model is loaded.
 */
import { useEffect, useState } from "react";
import type { CatalogueItem } from "../../shared/bridge";
import { useApp, useSlice } from "../context";

const mb = (n: number) => `${(n / 1e6).toFixed(n < 1e8 ? 1 : 0)} MB`;

export function ModelSetup() {
  const { controller } = useApp();
  const models = useSlice((s) => s.session, (s) => s.models);
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
        {items.map((m) => {
          const mine = dl?.id === m.id ? dl : null;
          const frac = mine && mine.totalBytes ? mine.downloadedBytes / mine.totalBytes : 0;
          return (
            <li key={m.id} data-testid={`catalogue-${m.id}`}>
              <div className="catalogue-name">
                {m.name} {m.recommended && <span className="badge">recommended</span>}
                <span className="muted"> · {mb(m.sizeBytes)}</span>
              </div>
              {mine && mine.status !== "done" && (
                <div className="progress" role="progressbar" aria-valuenow={Math.round(frac * 100)} aria-valuemin={0} aria-valuemax={100}>
                  <div style={{ width: `${(frac * 100).toFixed(1)}%` }} />
                  <span>
                    {mine.status === "downloading" ? `${(frac * 100).toFixed(0)}% · ${mb(mine.downloadedBytes)} of ${mb(mine.totalBytes)}` : mine.status}
                    {mine.error ? ` — ${mine.error}` : ""}
                  </span>
                </div>
              )}
              {mine?.status === "downloading" ? (
                <button onClick={() => act(() => controller.cancelDownload())}>Cancel</button>
              ) : (
                <button disabled={downloading} onClick={() => act(() => controller.downloadModel(m.id))}>
                  {mine?.status === "cancelled" || mine?.status === "error" ? "Resume" : "Download"}
                </button>
              )}
            </li>
          );
        })}
      </ul>
      <div className="open-local">
        <input value={gguf} placeholder="or a GGUF file on this computer: /path/to/model.gguf" onChange={(e) => setGguf(e.target.value)} />
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
        <p className="error" data-testid="model-error">
          {error ?? models?.slm.error}
        </p>
      )}
    </section>
  );
}
