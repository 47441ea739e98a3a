/**
 * Small HTTP helpers: bounded body reading and JSON responses.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { CloudError } from "./errors.js";

/**
 * How much of an oversized body is still read (and thrown away) before refusing it. Answering while
 * the client is still sending, then closing, makes the kernel reset the connection over the unread
 * data, and a reset can destroy the 413 before the client reads it (the fuzz test saw this). So the
 * server keeps reading, without keeping anything, until the body ends — up to these bounds, beyond
 * which the client is abusive and may get the reset.
 */
export const OVERSIZE_DRAIN = { bytes: 4 << 20, ms: 1000 };

/**
 * Reads the request body, refusing more than `limit` bytes: nothing past the limit is kept, what
 * follows is drained within OVERSIZE_DRAIN, then reading stops (the socket is paused and the response
 * must close the connection). A body declared larger than the limit plus the drain is refused at once.
 */
export function readBody(req: IncomingMessage, limit: number, drain = OVERSIZE_DRAIN): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let drained = 0;
    let timer: NodeJS.Timeout | undefined;
    const refuse = () => {
      clearTimeout(timer);
      req.pause();
      req.removeListener("data", onData);
      reject(new CloudError("payload_too_large", `The request body exceeds ${limit} bytes`));
    };
    const startDraining = () => {
      over = true;
      chunks.length = 0;
      timer = setTimeout(refuse, drain.ms);
    };
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      if (declared > limit + drain.bytes) return refuse();
      startDraining();
    }
    function onData(chunk: Buffer) {
      if (over) {
        drained += chunk.length;
        if (drained > drain.bytes) refuse();
        return;
      }
      size += chunk.length;
      if (size > limit) return startDraining();
      chunks.push(chunk);
    }
    req.on("data", onData);
    req.once("end", () => {
      if (over) refuse();
      else resolve(Buffer.concat(chunks, size));
    });
    // a broken upload is the client's doing, not a server fault worth logging as one
    req.once("error", (err) => {
      clearTimeout(timer);
      reject(new CloudError("bad_request", `Reading the request body failed: ${err.message}`));
    });
    // a client that hangs up mid-body: settle instead of waiting forever (a second settle is a no-op)
    req.once("close", () => {
      clearTimeout(timer);
      if (!req.complete) reject(new CloudError("bad_request", "The client closed the connection before sending the whole body"));
    });
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(text);
}
