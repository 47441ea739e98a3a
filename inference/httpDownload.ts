/**
 * Downloading one file over HTTP(S) without trusting the server: an overall deadline, a stall deadline,
 * cancel, a bounded number of attempts that make no progress, resume with a Range request, and a size
 * that may not change or be exceeded. A server that lies about the length cannot keep us retrying; a
 * full disk is an error (the partial file stays for a resume once there is room), never a crash.
 *
 * Why our own: node-llama-cpp's downloader (ipull) had no overall deadline, retried a lying server
 * indefinitely, returned the path of a file that did not exist after a timeout, and a write error
 * (ENOSPC) escaped it and ended the process.
 */
import { mkdir, open, rename, stat, statfs, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { TandemError, errorMessage } from "../shared/errors.js";
import { MAX_SPLIT_PARTS, preflightModelFile } from "./modelPreflight.js";

export interface HttpDownloadOptions {
  url: string;
  /** the finished file; bytes arrive in `<dest>.part` first */
  dest: string;
  signal: AbortSignal;
  /** the whole download, every attempt included */
  deadlineMs: number;
  /** longest wait for the next byte */
  stallMs: number;
  /** attempts in a row that bring no new byte before giving up */
  maxFutileAttempts: number;
  /** refuse a file announced larger than this */
  maxBytes: number;
  onProgress?: (downloaded: number, total: number) => void;
}

export class DownloadError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("download", message, options);
  }
}

interface Progress {
  done: number;
  total: number | null;
}

/** Downloads `url` to `dest` and resolves with `dest` once it holds exactly the announced bytes. */
export async function httpDownload(o: HttpDownloadOptions): Promise<string> {
  const part = `${o.dest}.part`;
  const p: Progress = { done: await sizeOf(part), total: null };
  const deadline = AbortSignal.timeout(o.deadlineMs);
  const overall = AbortSignal.any([o.signal, deadline]);
  let futile = 0;
  let lastError = "";
  while (p.total === null || p.done < p.total) {
    if (overall.aborted)
      throw new DownloadError(
        o.signal.aborted ? "cancelled" : `not finished within ${Math.round(o.deadlineMs / 1000)} s (${p.done} bytes so far)`,
      );
    if (futile >= o.maxFutileAttempts) {
      throw new DownloadError(
        `the server sent no more data after ${p.done}${p.total ? ` of ${p.total}` : ""} bytes in ${futile} attempts (${lastError})`,
      );
    }
    const before = p.done;
    try {
      await attempt(o, part, p, overall);
    } catch (err) {
      if (err instanceof DownloadError) throw err;
      lastError = errorMessage(err);
    }
    futile = p.done > before ? 0 : futile + 1;
  }
  await rename(part, o.dest);
  return o.dest;
}

/** One request: appends what it receives to `part`, updating `p`. Network trouble throws a plain Error (retried). */
async function attempt(o: HttpDownloadOptions, part: string, p: Progress, overall: AbortSignal): Promise<void> {
  const stall = new AbortController();
  let timer = setTimeout(() => stall.abort(), o.stallMs);
  const signal = AbortSignal.any([overall, stall.signal]);
  try {
    const res = await fetch(o.url, { headers: p.done > 0 ? { range: `bytes=${p.done}-` } : {}, signal, redirect: "follow" });
    if (res.status === 416 && p.total !== null && p.done >= p.total) return;
    if (res.status === 416) {
      // the partial file is not a prefix of this file (larger than it): start again
      await res.body?.cancel().catch(() => {});
      await removeQuietly(part);
      p.done = 0;
      throw new Error("the partial file did not fit the file on the server");
    }
    if (res.status >= 400) {
      await res.body?.cancel().catch(() => {});
      const e = new DownloadError(`HTTP ${res.status} from ${new URL(o.url).host}`);
      if (res.status >= 500 || res.status === 429) throw new Error(e.message); // worth another attempt
      throw e;
    }
    const resumed = res.status === 206;
    const total = totalOf(res, resumed ? p.done : 0);
    if (p.total !== null && total !== null && total !== p.total)
      throw new DownloadError(`the file changed size on the server (${p.total} then ${total} bytes)`);
    if (total !== null && total > o.maxBytes)
      throw new DownloadError(`the server announces ${total} bytes, more than the ${o.maxBytes} expected`);
    if (p.total === null && total !== null) await checkRoom(part, total - (resumed ? p.done : 0));
    p.total ??= total;
    const fh = await open(part, resumed ? "a" : "w");
    if (!resumed) p.done = 0;
    try {
      for await (const chunk of (res.body ?? []) as unknown as AsyncIterable<Uint8Array>) {
        clearTimeout(timer);
        timer = setTimeout(() => stall.abort(), o.stallMs);
        const bytes = chunk as Uint8Array;
        if (p.total !== null && p.done + bytes.length > p.total)
          throw new DownloadError(`the server sent more than the ${p.total} bytes it announced`);
        await writeAll(fh, bytes);
        p.done += bytes.length;
        o.onProgress?.(p.done, p.total ?? 0);
      }
    } finally {
      await fh.close().catch(() => {});
    }
    if (p.total === null) p.total = p.done; // no length given: the end of the body is the end of the file
  } catch (err) {
    if (stall.signal.aborted && !overall.aborted) throw new Error(`no data for ${Math.round(o.stallMs / 1000)} s`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  try {
    for (let done = 0; done < bytes.length;) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // a full disk is not a network hiccup: stop, keep the partial file for a resume once there is room
    if (code === "ENOSPC" || code === "EDQUOT")
      throw new DownloadError(`the disk is full (${errorMessage(err)}); free some space and download again to resume`);
    throw new DownloadError(`cannot write the file: ${errorMessage(err)}`);
  }
}

/** The whole file's size from Content-Range (206) or Content-Length (200), or null if not given. */
function totalOf(res: Response, offset: number): number | null {
  const range = /\/(\d+)\s*$/.exec(res.headers.get("content-range") ?? "");
  if (range) return Number(range[1]);
  const len = res.headers.get("content-length");
  return len !== null && /^\d+$/.test(len) ? offset + Number(len) : null;
}

async function checkRoom(file: string, need: number): Promise<void> {
  const fs = await statfs(path.dirname(file)).catch(() => null);
  if (fs && fs.bavail * fs.bsize < need) {
    throw new DownloadError(
      `the disk is full: the model needs ${need} bytes and ${fs.bavail * fs.bsize} are free; free some space and download again`,
    );
  }
}

async function sizeOf(file: string): Promise<number> {
  return (await stat(file).catch(() => null))?.size ?? 0;
}

export async function removeQuietly(file: string): Promise<void> {
  await unlink(file).catch(() => {});
}

// ---------------------------------------------------------------------------------------------------
// Model files: where a URI's file goes, and a download that hands back only a file the loader may open

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

/**
 * Downloads the model at `uri` (an http(s) URL or `hf:<user>/<repo>/<file>.gguf`) into `dir`, resuming
 * a partial file, within `limits`; resolves with the path of a file that exists and passes the preflight.
 * A file already there and whole is returned at once.
 */
export async function downloadModelFile(
  uri: string,
  dir: string,
  signal: AbortSignal,
  limits: DownloadLimits = DEFAULT_DOWNLOAD_LIMITS,
  onProgress?: (downloaded: number, total: number) => void,
): Promise<string> {
  const { urls, files } = modelFiles(uri, dir);
  const dest = files[0]!;
  if (await downloadedModelPath(uri, dir)) return dest;
  await mkdir(dir, { recursive: true });
  for (const [i, url] of urls.entries()) {
    // a part under its final name is whole (httpDownload renames it there only once complete); one the
    // check above found unusable has been moved aside, so it is fetched again
    if (!(await isFile(files[i]!))) await httpDownload({ url, dest: files[i]!, signal, ...limits, onProgress });
  }
  await verify(dest);
  return dest;
}

/** The model at `uri` as already downloaded into `dir` (every part present, the preflight passed), else null. */
export async function downloadedModelPath(uri: string, dir: string): Promise<string | null> {
  const { files } = modelFiles(uri, dir);
  if (!(await Promise.all(files.map(isFile))).every(Boolean)) return null;
  return (await usable(files[0]!)) ? files[0]! : null;
}

/** Where the parts of the model at `uri` go in `dir`: a split model is named by its first part. */
function modelFiles(uri: string, dir: string): { urls: string[]; files: string[] } {
  const urls = splitPartUrls(downloadUrl(uri));
  return { urls, files: urls.map((url) => path.join(dir, fileNameOf(url))) };
}

async function isFile(f: string): Promise<boolean> {
  return !!(await stat(f).catch(() => null))?.isFile();
}

/** The URLs of every part of a split model named by its first part (`…-00001-of-00003.gguf`); else the URL alone. */
function splitPartUrls(url: string): string[] {
  const m = /-00001-of-(\d{5})\.gguf$/.exec(url);
  const count = m ? Number(m[1]) : 1;
  if (!m || count < 2 || count > MAX_SPLIT_PARTS) return [url];
  const stem = url.slice(0, m.index);
  return Array.from({ length: count }, (_, i) => `${stem}-${String(i + 1).padStart(5, "0")}-of-${m[1]}.gguf`);
}

/** Whether `uri` names one file directly (an http(s) URL or an hf: file URI), not a repository tag. */
export function isDirectModelUri(uri: string): boolean {
  try {
    downloadUrl(uri);
    return true;
  } catch {
    return false;
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
