/**
 * Issue 16, class 8 (client part): the cloud client must not trust a server's reply size. A fake
 * server (real HTTP on 127.0.0.1, no model needed) answers with 100 MB — declared, undeclared
 * (chunked) and under a lying Content-Length — to a call and to a /route stream; each must be cut
 * off after at most the bound, fail as a call (CloudCallError, so the decoder falls back), and leave
 * the process well.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudCallError } from "../../electron/engine/cloud/peer.js";
import { TandemCloudClient } from "../../electron/engine/cloud/tandemClient.js";
import { PROTOCOL_LIMITS, type ModelIdentity } from "../../shared/protocol.js";
import { ConfidenceRouter } from "../../shared/router.js";
import { errorMessage } from "../../shared/errors.js";

const HUGE = 100 << 20;
const CHUNK = Buffer.alloc(64 << 10, 0x20); // spaces: valid JSON whitespace, never a complete value
const NEWLINES = Buffer.alloc(64 << 10, 0x0a); // blank NDJSON lines
const device: ModelIdentity = { name: "fake", vocabHash: "a".repeat(64), vocabSize: 100, weights: "w".repeat(16) };
const session = {
  sessionId: "00000000-0000-4000-8000-000000000000",
  model: device,
  contextSize: 256,
  replica: { model: device, routers: ["confidence"] },
};

type Mode = "declared" | "chunked" | "lying";

/** Streams up to HUGE bytes of `chunk`, stopping when the client goes; resolves to the bytes written. */
function flood(res: http.ServerResponse, chunk: Buffer, sent: { bytes: number }): void {
  const pump = () => {
    while (sent.bytes < HUGE && !res.destroyed) {
      sent.bytes += chunk.length;
      if (!res.write(chunk)) return void res.once("drain", pump);
    }
    res.end();
  };
  pump();
}

describe("the cloud client bounds what it reads", () => {
  let server: http.Server;
  let url: string;
  /** what the fake does with the next request of each kind */
  let mode: Mode = "chunked";
  let floodSession = false;
  const sent = { bytes: 0 };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const route = req.url?.endsWith("/route");
        if (req.url === "/v1/sessions" && !floodSession) {
          res.writeHead(200, { "content-type": "application/json" });
          return res.end(JSON.stringify(session));
        }
        const headers: Record<string, string> = { "content-type": route ? "application/x-ndjson" : "application/json" };
        if (mode === "declared") headers["content-length"] = String(HUGE);
        if (mode === "lying") headers["content-length"] = "10"; // then sends far more: Node refuses to, so write raw
        if (mode === "lying") {
          res.socket!.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"length":`);
          const pump = () => {
            while (sent.bytes < HUGE && !res.socket!.destroyed) {
              sent.bytes += CHUNK.length;
              if (!res.socket!.write(CHUNK)) return void res.socket!.once("drain", pump);
            }
          };
          return pump();
        }
        res.writeHead(200, headers);
        flood(res, route ? NEWLINES : CHUNK, sent);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  async function measure<T>(what: () => Promise<T>): Promise<{ error: unknown; ms: number }> {
    sent.bytes = 0;
    const t0 = performance.now();
    let error: unknown;
    try {
      await what();
    } catch (e) {
      error = e;
    }
    return { error, ms: performance.now() - t0 };
  }

  it.each<Mode>(["chunked", "declared"])("a 100 MB session reply (%s) fails the connect, read no further than the bound", async (m) => {
    mode = m;
    floodSession = true;
    const client = new TandemCloudClient({ url, deadlineMs: 10_000 });
    const { error, ms } = await measure(() => client.connect(device));
    floodSession = false;
    expect(error).toBeInstanceOf(CloudCallError);
    expect((error as CloudCallError).message).toMatch(/larger than 1048576 bytes/);
    // 64 KiB chunks: at most one past the bound
    expect(client.stats.bytesDown).toBeLessThanOrEqual(PROTOCOL_LIMITS.maxReplyBytes + CHUNK.length);
    console.log(
      `session reply ${m}: refused after ${client.stats.bytesDown} bytes read in ${ms.toFixed(0)} ms (server wrote ${sent.bytes})`,
    );
    expect(ms).toBeLessThan(5000);
  });

  it.each<Mode>(["chunked", "declared", "lying"])("a 100 MB reply to /next (%s) is a failed call, not a crash", async (m) => {
    const client = new TandemCloudClient({ url, deadlineMs: 10_000 });
    await client.connect(device);
    mode = m;
    const before = client.stats.bytesDown;
    const { error, ms } = await measure(() => client.next([1, 2, 3]));
    expect(error).toBeInstanceOf(CloudCallError);
    const read = client.stats.bytesDown - before;
    expect(read).toBeLessThanOrEqual(PROTOCOL_LIMITS.maxReplyBytes + CHUNK.length);
    // lying: fetch reads the 10 declared bytes, which are not JSON; the rest never reaches the client
    expect((error as CloudCallError).reason).toBe("malformed");
    console.log(`/next reply ${m}: failed (${errorMessage(error)}) after ${read} bytes read in ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(5000);
    expect(client.stats.failures).toBe(1);
    await client.close();
  });

  it("a 100 MB /route stream of blank lines is cut off: the stream ends with a failure", async () => {
    const client = new TandemCloudClient({ url, deadlineMs: 10_000 });
    await client.connect(device);
    mode = "chunked";
    sent.bytes = 0;
    const t0 = performance.now();
    const stream = client.route([1, 2, 3], { tau: 0.5, router: new ConfidenceRouter(), position: 0, max: 8 });
    expect(stream).not.toBeNull();
    const wait = await stream!.at(0);
    const ms = performance.now() - t0;
    expect(wait.kind).toBe("ended");
    const ended = wait.kind === "ended" ? wait.error : null;
    expect(ended).toBeInstanceOf(CloudCallError);
    expect(ended!.message).toMatch(/more than \d+ bytes/);
    expect(client.stats.bytesDown).toBeLessThan(1 << 20);
    console.log(
      `/route flood: ended (${ended!.message}) after ${client.stats.bytesDown} bytes read in ${ms.toFixed(0)} ms (server wrote ${sent.bytes})`,
    );
    expect(client.stats.failures).toBe(1);
    await client.close();
  });
});
