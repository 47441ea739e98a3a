/**
 * Small HTTP helpers: bounded body reading and JSON responses.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { CloudError } from "./errors.js";

/**
 * Reads the request body, refusing more than `limit` bytes. On refusal it stops reading (the socket is
 * paused and the response must close the connection), so an oversized body is never buffered.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => {
      req.pause();
      req.removeListener("data", onData);
      reject(new CloudError("payload_too_large", `The request body exceeds ${limit} bytes`));
    };
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) return tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    function onData(chunk: Buffer) {
      size += chunk.length;
      if (size > limit) return tooLarge();
      chunks.push(chunk);
    }
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks, size)));
    // a broken upload is the client's doing, not a server fault worth logging as one
    req.once("error", (err) => reject(new CloudError("bad_request", `Reading the request body failed: ${err.message}`)));
    // a client that hangs up mid-body: settle instead of waiting forever (a second settle is a no-op)
    req.once("close", () => {
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
