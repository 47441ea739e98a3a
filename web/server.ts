/**
 * Browser mode's host: one Node process with the engine service, the built renderer as static files,
 * and the bridge on a WebSocket. Loopback only.
 */
import { readFile, stat } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { BridgeApi, BridgeEvent } from "../shared/bridge.js";
import { CONTENT_SECURITY_POLICY, STATIC_SECURITY_HEADERS, staticContentType } from "../shared/csp.js";
import { attachWsBridge } from "./wsBridge.js";

/** The same policy as the Electron window: no inline script, nothing from elsewhere (one definition: shared/csp.ts). */
export { CONTENT_SECURITY_POLICY };

const HEADERS = { ...STATIC_SECURITY_HEADERS, "cache-control": "no-store" };

class BadRequest extends Error {}

/** The request's path, decoded; a malformed URL or %-escape is the client's error, not the server's. */
export function requestPath(rawUrl: string | undefined): string {
  try {
    const rel = decodeURIComponent(new URL(rawUrl ?? "/", "http://x").pathname);
    if (rel.includes("\0")) throw new Error("NUL in path");
    return rel;
  } catch {
    throw new BadRequest("malformed request path");
  }
}

async function serveStatic(root: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, HEADERS).end();
    return;
  }
  let rel = requestPath(req.url);
  if (rel === "/" || !path.extname(rel)) rel = "/index.html"; // a single-page app
  const file = path.resolve(root, "." + rel);
  if (!file.startsWith(root + path.sep)) {
    res.writeHead(403, HEADERS).end();
    return;
  }
  try {
    if (!(await stat(file)).isFile()) throw new Error("not a file");
    const body = await readFile(file);
    res.writeHead(200, { ...HEADERS, "content-type": staticContentType(path.extname(file)) });
    res.end(req.method === "HEAD" ? undefined : body);
  } catch {
    const missingBuild = rel === "/index.html";
    res.writeHead(missingBuild ? 503 : 404, { ...HEADERS, "content-type": "text/plain; charset=utf-8" });
    res.end(missingBuild ? `The renderer is not built: run npm run build:renderer (looked in ${root})` : "not found");
  }
}

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

export async function startWebServer(opts: {
  staticDir: string;
  api: BridgeApi;
  subscribe: (l: (e: BridgeEvent) => void) => () => void;
  host?: string;
  port?: number;
}): Promise<WebServer> {
  const root = path.resolve(opts.staticDir);
  const server = http.createServer((req, res) => {
    // Any page the user visits can make the browser request this server (an <img> needs no
    // permission): nothing a request holds may throw out of its handler and take the engine down.
    serveStatic(root, req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      const bad = err instanceof BadRequest;
      res.writeHead(bad ? 400 : 500, { ...HEADERS, "content-type": "text/plain; charset=utf-8" });
      res.end(bad ? err.message : "internal error");
    });
  });
  const wss = attachWsBridge(server, opts.api, opts.subscribe);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 5174, opts.host ?? "127.0.0.1", () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}/`,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
