/**
 * Downloading the SLM for the user: one download at a time, with progress, cancel and resume.
 *
 * The bytes come through httpDownload.ts (an overall deadline, a stall deadline, bounded retries, a size
 * the server cannot change or exceed, a full disk an error and not a crash); a partial file is kept and
 * a later download of the same model continues it with an HTTP Range request. The finished file is
 * checked like any model file (modelPreflight.ts) before its path is returned: a file that fails is
 * set aside, never handed to the loader. Files land in the user's data folder, never the working directory.
 */
import { stat } from "node:fs/promises";
import type { DownloadState } from "../../shared/bridge.js";
import { DEFAULT_DOWNLOAD_LIMITS, downloadModelFile, type DownloadLimits } from "../../inference/httpDownload.js";
import { errorMessage } from "../../shared/errors.js";

export interface DownloadRequest {
  /** catalogue id, for the UI */
  id: string;
  /** hf: URI (`hf:<user>/<repo>/<file>`) or http(s) URL */
  uri: string;
  dir: string;
}

export { DEFAULT_DOWNLOAD_LIMITS, type DownloadLimits };

export class ModelDownloads {
  private current: { req: DownloadRequest; abort: AbortController } | null = null;
  private state: DownloadState | null = null;

  constructor(
    private readonly onChange: (state: DownloadState | null) => void,
    private readonly limits: DownloadLimits = DEFAULT_DOWNLOAD_LIMITS,
  ) {}

  get status(): DownloadState | null {
    return this.state;
  }

  /** Downloads `req` (resuming a partial file), checks it, and resolves with the model's path; rejects on cancel or error. */
  async download(req: DownloadRequest): Promise<string> {
    if (this.current) throw new Error(`A download is already running (${this.current.req.id}); cancel it first`);
    const abort = new AbortController();
    this.current = { req, abort };
    let total = 0;
    let done = 0;
    const set = (status: DownloadState["status"], error: string | null = null) =>
      this.set({ id: req.id, totalBytes: total, downloadedBytes: done, status, error });
    set("downloading");
    try {
      const dest = await downloadModelFile(req.uri, req.dir, abort.signal, this.limits, (d, t) => {
        done = d;
        total = t;
        set("downloading");
      });
      total = done = (await stat(dest)).size;
      set("done");
      return dest;
    } catch (err) {
      const cancelled = abort.signal.aborted;
      const message = cancelled ? "cancelled" : `Download failed: ${errorMessage(err)}`;
      set(cancelled ? "cancelled" : "error", cancelled ? null : message);
      throw new Error(message, { cause: err });
    } finally {
      this.current = null;
    }
  }

  /** Stops the running download, keeping what was downloaded so far. */
  async cancel(): Promise<boolean> {
    const c = this.current;
    if (!c) return false;
    c.abort.abort();
    return true;
  }

  private set(s: DownloadState): void {
    this.state = s;
    this.onChange(s);
  }
}
