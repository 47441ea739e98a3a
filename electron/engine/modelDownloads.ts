/**
 * Downloading the SLM for the user: one download at a time, with progress, cancel and resume.
 *
 * The bytes come through httpDownload.ts (an overall deadline, a stall deadline, bounded retries, a size
 * the server cannot change or exceed, a full disk an error and not a crash); a partial file is kept and
 * a later download of the same model continues it with an HTTP Range request. The finished file is
 * checked like any model file (modelPreflight.ts) before its path is returned: a file that fails is
 * set aside, never handed to the loader. Files land in the user's data folder, never the working directory.
 */
import { mkdir, rename, stat } from "node:fs/promises";
import path from "node:path";
import type { DownloadState } from "../../shared/bridge.js";
import { preflightModelFile } from "../../inference/modelPreflight.js";
import { DownloadError, httpDownload } from "./httpDownload.js";
import { errorMessage } from "../../shared/errors.js";

export interface DownloadRequest {
  /** catalogue id, for the UI */
  id: string;
  /** hf: URI (`hf:<user>/<repo>/<file>`) or http(s) URL */
  uri: string;
  dir: string;
}

export interface DownloadLimits {
  /** the whole download, every retry included */
  deadlineMs: number;
  /** longest wait for the next byte */
  stallMs: number;
  /** attempts in a row that bring no new byte */
  maxFutileAttempts: number;
  /** the largest file accepted */
  maxBytes: number;
}

export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = { deadlineMs: 6 * 3600_000, stallMs: 60_000, maxFutileAttempts: 5, maxBytes: 64e9 };

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
      const url = downloadUrl(req.uri);
      const dest = path.join(req.dir, fileNameOf(url));
      if (!(await usable(dest))) {
        await mkdir(req.dir, { recursive: true });
        await httpDownload({
          url,
          dest,
          signal: abort.signal,
          ...this.limits,
          onProgress: (d, t) => {
            done = d;
            total = t;
            set("downloading");
          },
        });
        await verify(dest);
      }
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

/** The URL to fetch: an http(s) URL as given, an `hf:<user>/<repo>/<file>` URI as the hub's file URL. */
export function downloadUrl(uri: string): string {
  if (/^https?:\/\//.test(uri)) return new URL(uri).href;
  const m = /^(?:hf|huggingface):([\w.-]+)\/([\w.-]+)\/([\w./-]+\.gguf)$/.exec(uri);
  if (!m || m[3].split("/").includes("..")) throw new DownloadError(`${uri} is not a model URL or an hf:<user>/<repo>/<file>.gguf URI`);
  return `https://huggingface.co/${m[1]}/${m[2]}/resolve/main/${m[3]}`;
}

function fileNameOf(url: string): string {
  const base = decodeURIComponent(new URL(url).pathname.split("/").pop() ?? "");
  const safe = base.replace(/[^\w.-]/g, "_").replace(/^\.+/, "");
  return safe.endsWith(".gguf") ? safe : `${safe || "model"}.gguf`;
}

/** A file already downloaded and whole (skip the download), else false. */
async function usable(file: string): Promise<boolean> {
  if (!(await stat(file).catch(() => null))) return false;
  return verify(file).then(
    () => true,
    () => false, // verify moved it aside: download again
  );
}

/** The finished file must be a model the app can load; one that is not is moved aside, not returned. */
async function verify(file: string): Promise<void> {
  try {
    await preflightModelFile(file);
  } catch (err) {
    const aside = `${file}.corrupt-${Date.now()}`;
    await rename(file, aside).catch(() => {});
    throw new DownloadError(`the downloaded file is not a usable model (${errorMessage(err)}); it was moved aside to ${aside}`);
  }
}
