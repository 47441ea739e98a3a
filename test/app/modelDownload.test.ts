/**
 * First-run model download through the engine service: progress, cancel, resume (an HTTP Range request
 * continues the partial file), then the model is loaded and remembered for the next start. The "remote"
 * is a throttled HTTP server on loopback serving a real GGUF (nothing can be downloaded here).
 */
import { createReadStream, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeEvent, DownloadState } from "../../shared/bridge.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { TandemService } from "../../electron/engine/service.js";

interface Served {
  url: string;
  ranges: (string | undefined)[];
  close(): Promise<void>;
}

/** Serves one file with Range support, 32 KiB every 15 ms, so a test can cancel mid-way. */
async function serveSlowly(file: string): Promise<Served> {
  const size = statSync(file).size;
  const ranges: (string | undefined)[] = [];
  const server = http.createServer((req, res) => {
    ranges.push(req.headers.range);
    const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] ? Number(m[2]) : size - 1;
    const headers = { "content-length": String(end - start + 1), "accept-ranges": "bytes", "content-type": "application/octet-stream" };
    if (m) res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end}/${size}` });
    else res.writeHead(200, headers);
    if (req.method === "HEAD") return res.end();
    const stream = createReadStream(file, { start, end, highWaterMark: 32 * 1024 });
    stream.on("data", (chunk) => {
      stream.pause();
      res.write(chunk);
      setTimeout(() => stream.resume(), 15);
    });
    stream.on("end", () => res.end());
    res.on("close", () => stream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/tiny-slm.gguf`,
    ranges,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function waitFor(service: TandemService, pred: (d: DownloadState) => boolean, timeoutMs = 30_000): Promise<DownloadState> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting for the download state")), timeoutMs);
    const off = service.subscribe((e: BridgeEvent) => {
      if (process.env.DEBUG_DL && e.type === "models") console.log(JSON.stringify(e.models.download));
      if (e.type === "models" && e.models.download && pred(e.models.download)) {
        clearTimeout(timer);
        off();
        resolve(e.models.download);
      }
    });
  });
}

describe("model download (first run)", () => {
  let served: Served;
  let dataDir: string;
  let file: string;

  beforeAll(async () => {
    file = (await ensureFixtures()).randGpt2; // ~27 MB: long enough to cancel mid-way
    served = await serveSlowly(file);
    dataDir = await mkdtemp(path.join(os.tmpdir(), "tandem-dl-"));
  });
  afterAll(async () => {
    await served?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("starts with no model, downloads with progress, cancels, resumes, loads and remembers", async () => {
    const catalogue = [{ id: "tiny", name: "Tiny test SLM", sizeBytes: statSync(file).size, uri: served.url, recommended: true }];
    const service = await TandemService.start({ dataDir, catalogue, contextSize: 128 });
    try {
      const first = await service.snapshot();
      expect(first.models.slm.loaded).toBe(false);
      expect(await service.catalogue()).toEqual(catalogue);
      await expect(service.downloadModel({ id: "nope" })).rejects.toThrow(/catalogue/);

      const progressed = waitFor(service, (d) => d.status === "downloading" && d.downloadedBytes > 0);
      await service.downloadModel({ id: "tiny" });
      const mid = await progressed;
      expect(mid.totalBytes).toBe(statSync(file).size);
      const cancelled = waitFor(service, (d) => d.status === "cancelled");
      await service.cancelDownload({});
      const atCancel = await cancelled;
      expect(atCancel.downloadedBytes).toBeGreaterThan(0);
      expect(atCancel.downloadedBytes).toBeLessThan(atCancel.totalBytes);
      expect((await service.snapshot()).models.slm.loaded).toBe(false);

      const requestsBefore = served.ranges.length;
      const loaded = new Promise<void>((resolve) => {
        const off = service.subscribe((e) => {
          if (e.type === "models" && e.models.slm.loaded) {
            off();
            resolve();
          }
        });
      });
      await service.downloadModel({ id: "tiny" });
      await loaded;
      // the resumed download asked for the rest of the file, not all of it
      const resumed = served.ranges.slice(requestsBefore).filter((r) => r && !/bytes=0-/.test(r));
      expect(resumed.length).toBeGreaterThan(0);
      const done = (await service.snapshot()).models;
      expect(done.download?.status).toBe("done");
      expect(done.slm.name).toMatch(/gpt/i);
    } finally {
      await service.close();
    }

    // the next start loads the chosen model without asking again
    const again = await TandemService.start({ dataDir, catalogue, contextSize: 128 });
    try {
      expect((await again.snapshot()).models.slm.loaded).toBe(true);
    } finally {
      await again.close();
    }
  });
});
