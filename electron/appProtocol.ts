/**
 * The renderer is served from `app://tandem/…` (Electron's security checklist, item 18: a custom
 * protocol instead of file://, so the page gets no file:// privileges and the GrantFileProtocolExtraPrivileges
 * fuse can be off). Only files under the renderer's folder are served, with the same CSP header as
 * browser mode. main.ts registers the scheme as privileged (standard, secure) before the app is ready
 * and hands requests to appResponse. No `electron` import: tested in plain Node.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { STATIC_SECURITY_HEADERS, staticContentType } from "../shared/csp.js";

export const APP_SCHEME = "app";
export const APP_HOST = "tandem";
export const APP_INDEX_URL = `${APP_SCHEME}://${APP_HOST}/index.html`;

/** Scheme privileges for protocol.registerSchemesAsPrivileged: a secure, standard origin (no others). */
export const APP_SCHEME_PRIVILEGES = { standard: true, secure: true, supportFetchAPI: true } as const;

const HEADERS = { ...STATIC_SECURITY_HEADERS };

/** The response to one `app://` request: a file under `rootDir`, or 403/404/405. */
export async function appResponse(request: { url: string; method: string }, rootDir: string): Promise<Response> {
  if (request.method !== "GET" && request.method !== "HEAD") return new Response(null, { status: 405, headers: HEADERS });
  const file = appFilePath(request.url, rootDir);
  if (!file) return new Response("forbidden", { status: 403, headers: HEADERS });
  try {
    if (!(await stat(file)).isFile()) throw new Error("not a file");
    const body = request.method === "HEAD" ? null : await readFile(file);
    return new Response(body, {
      status: 200,
      headers: { ...HEADERS, "content-type": staticContentType(path.extname(file)) },
    });
  } catch {
    return new Response("not found", { status: 404, headers: HEADERS });
  }
}

/** The file an app:// URL names, or null when it is not ours (another host, outside the folder). */
export function appFilePath(url: string, rootDir: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== `${APP_SCHEME}:` || u.host !== APP_HOST) return null;
  let rel: string;
  try {
    rel = decodeURIComponent(u.pathname);
  } catch {
    return null;
  }
  if (rel === "/" || rel === "") rel = "/index.html";
  if (rel.includes("\0")) return null;
  const root = path.resolve(rootDir);
  const file = path.resolve(root, "." + rel);
  return file.startsWith(root + path.sep) ? file : null;
}
