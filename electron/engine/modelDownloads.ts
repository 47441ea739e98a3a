/**
 * Downloading the SLM for the user: one download at a time, with progress, cancel and resume.
 *
 * node-llama-cpp's downloader (ipull) keeps a partial file when cancelled with deleteTempFile: false, and
 * a later download of the same URI into the same folder continues from it with an HTTP Range request.
 * Files land in the user's data folder, never in the working directory.
 */
import { createModelDownloader, type ModelDownloader } from "node-llama-cpp";
import type { DownloadState } from "../../shared/bridge.js";

export interface DownloadRequest {
  /** catalogue id, for the UI */
  id: string;
  /** hf: URI or http(s) URL */
  uri: string;
  dir: string;
}

export class ModelDownloads {
  private current: { req: DownloadRequest; downloader: ModelDownloader | null; abort: AbortController } | null = null;
  private state: DownloadState | null = null;

  constructor(private readonly onChange: (state: DownloadState | null) => void) {}

  get status(): DownloadState | null {
    return this.state;
  }

  /** Downloads `req` (resuming a partial file) and resolves with the model's path; rejects on cancel or error. */
  async download(req: DownloadRequest): Promise<string> {
    if (this.current) throw new Error(`A download is already running (${this.current.req.id}); cancel it first`);
    const abort = new AbortController();
    const isUrl = /^https?:\/\//.test(req.uri);
    // the state shows at once (resolving an hf: URI asks the hub first, which can take a while or
    // hang offline), and Cancel works from this moment on
    this.current = { req, downloader: null, abort };
    this.set({ id: req.id, totalBytes: 0, downloadedBytes: 0, status: "downloading", error: null });
    let downloader: ModelDownloader;
    try {
      const creating = createModelDownloader({
        ...(isUrl ? { modelUrl: req.uri } : { modelUri: req.uri }),
        dirPath: req.dir,
        showCliProgress: false,
        skipExisting: true,
        deleteTempFileOnCancel: false, // keep the partial file: the next download resumes it
        onProgress: ({ totalSize, downloadedSize }) => this.set({ id: req.id, totalBytes: totalSize, downloadedBytes: downloadedSize, status: "downloading", error: null }),
      });
      downloader = await Promise.race([creating, aborted(abort.signal)]);
      creating.catch(() => {}); // lost the race to a cancel: its late failure is of no interest
    } catch (err) {
      this.current = null;
      const cancelled = abort.signal.aborted;
      const message = cancelled ? "cancelled" : `Cannot download ${req.uri}: ${(err as Error).message}`;
      this.set({ id: req.id, totalBytes: 0, downloadedBytes: 0, status: cancelled ? "cancelled" : "error", error: cancelled ? null : message });
      throw new Error(message);
    }
    this.current.downloader = downloader;
    this.set({ id: req.id, totalBytes: downloader.totalSize, downloadedBytes: downloader.downloadedSize, status: "downloading", error: null });
    try {
      const file = await downloader.download({ signal: abort.signal });
      // a cancelled download resolves too (ipull stops quietly): only a complete file counts
      if (abort.signal.aborted) throw new Error("cancelled");
      if (downloader.downloadedSize < downloader.totalSize) {
        throw new Error(`incomplete (${downloader.downloadedSize} of ${downloader.totalSize} bytes)`);
      }
      this.set({ id: req.id, totalBytes: downloader.totalSize, downloadedBytes: downloader.totalSize, status: "done", error: null });
      return file;
    } catch (err) {
      const cancelled = abort.signal.aborted;
      const message = cancelled ? "cancelled" : `Download failed: ${(err as Error).message}`;
      this.set({
        id: req.id,
        totalBytes: downloader.totalSize,
        downloadedBytes: downloader.downloadedSize,
        status: cancelled ? "cancelled" : "error",
        error: cancelled ? null : message,
      });
      throw new Error(message);
    } finally {
      this.current = null;
    }
  }

  /** Stops the running download, keeping what was downloaded so far. */
  async cancel(): Promise<boolean> {
    const c = this.current;
    if (!c) return false;
    c.abort.abort();
    await c.downloader?.cancel({ deleteTempFile: false }).catch(() => {});
    return true;
  }

  private set(s: DownloadState): void {
    this.state = s;
    this.onChange(s);
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener("abort", () => reject(new Error("cancelled")), { once: true }));
}
