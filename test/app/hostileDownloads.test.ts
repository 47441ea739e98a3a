/**
 * Issue 16, class 8 (downloads) and class 2 (a full disk during a download): a real HTTP server on
 * loopback that lies about the length, stalls, trickles forever, sends more than it announced or
 * serves something that is not a model; a real 1 MiB tmpfs as the models folder (root only: skipped
 * with a message otherwise). Every download ends in a clear error within its bounds, no path is
 * returned for a file that does not exist, and the process lives.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtures } from "../../models/fixtures.js";
import { ModelDownloads, type DownloadLimits } from "../../electron/engine/modelDownloads.js";
import type { DownloadState } from "../../shared/bridge.js";

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

let model: Buffer;
let server: http.Server;
let base = "";
const requests: Record<string, number> = {};
const routes: Record<string, Handler> = {};

function rangeStart(req: http.IncomingMessage): number {
  return Number(/bytes=(\d+)-/.exec(req.headers.range ?? "")?.[1] ?? 0);
}

beforeAll(async () => {
  model = readFileSync((await ensureFixtures()).randGpt2);
  routes["/lies.gguf"] = (req, res) => {
    // claims the whole model, then always hangs up after the first 64 KiB of the file
    const start = rangeStart(req);
    const headers = { "content-length": String(model.length - start), "accept-ranges": "bytes" };
    res.writeHead(
      start ? 206 : 200,
      start ? { ...headers, "content-range": `bytes ${start}-${model.length - 1}/${model.length}` } : headers,
    );
    res.write(model.subarray(start, Math.max(start, 65536)), () => res.destroy());
  };
  routes["/stalls.gguf"] = (_req, res) => {
    res.writeHead(200, { "content-length": String(model.length) });
    res.write(model.subarray(0, 1000)); // then nothing, connection open
  };
  routes["/trickles.gguf"] = (_req, res) => {
    res.writeHead(200, { "content-length": String(model.length) });
    let at = 0;
    const t = setInterval(() => (at < model.length ? res.write(model.subarray(at, ++at)) : clearInterval(t)), 50);
    res.on("close", () => clearInterval(t));
  };
  routes["/more.gguf"] = (_req, res) => {
    res.writeHead(200, { "transfer-encoding": "chunked", "content-range": `bytes 0-99/100` });
    res.end(model.subarray(0, 5000));
  };
  routes["/notmodel.gguf"] = (_req, res) => res.writeHead(200, { "content-length": "4096" }).end(Buffer.alloc(4096, 7));
  routes["/model.gguf"] = (req, res) => {
    const start = rangeStart(req);
    res.writeHead(start ? 206 : 200, start ? { "content-range": `bytes ${start}-${model.length - 1}/${model.length}` } : {});
    res.end(model.subarray(start)); // chunked: no length up front, so only the disk can say it is full
  };
  server = http.createServer((req, res) => {
    requests[req.url!] = (requests[req.url!] ?? 0) + 1;
    res.on("error", () => {});
    (routes[req.url!] ?? ((_q, r) => r.writeHead(404).end()))(req, res, model);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const limits: DownloadLimits = { deadlineMs: 4000, stallMs: 500, maxFutileAttempts: 3, maxBytes: 1e9 };

async function run(route: string, dir = mkdtempSync(path.join(tmpdir(), "tandem-dl-hostile-")), l = limits) {
  const states: DownloadState[] = [];
  const d = new ModelDownloads((s) => s && states.push(s), l);
  const t0 = performance.now();
  const result = await d.download({ id: route, uri: `${base}${route}`, dir }).then(
    (file) => ({ file, error: null as string | null }),
    (e: Error) => ({ file: null, error: e.message }),
  );
  return { ...result, ms: performance.now() - t0, dir, states, d };
}

describe("hostile download servers (issue 16, class 8)", () => {
  it("a server lying about the length: a few attempts, then a clear error; no endless retries", async () => {
    const r = await run("/lies.gguf");
    expect(r.file).toBeNull();
    expect(r.error).toMatch(/Download failed: the server sent no more data after 65536 of \d+ bytes in 3 attempts/);
    expect(requests["/lies.gguf"]).toBe(4); // the first, which made progress, and three that did not
    expect(r.states.at(-1)?.status).toBe("error");
  });

  it("a stalled server: the stall bound ends each attempt and the download fails; no path returned", async () => {
    const r = await run("/stalls.gguf");
    expect(r.error).toMatch(/no more data after 1000 of \d+ bytes .*no data for 1 s|no more data after 1000/);
    expect(r.ms).toBeLessThan(4000);
    expect(readdirSync(r.dir).filter((f) => !f.endsWith(".part"))).toEqual([]);
  });

  it("a server that trickles forever: the overall deadline ends it, the file does not exist", async () => {
    const r = await run("/trickles.gguf");
    expect(r.error).toMatch(/Download failed: not finished within 4 s/);
    expect(r.ms).toBeLessThan(6000);
    expect(existsSync(path.join(r.dir, "trickles.gguf"))).toBe(false);
  });

  it("cancel ends a stalled download at once", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tandem-dl-hostile-"));
    const d = new ModelDownloads(() => {}, { ...limits, stallMs: 60_000, deadlineMs: 60_000 });
    const p = d.download({ id: "s", uri: `${base}/stalls.gguf`, dir });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    await d.cancel();
    await expect(p).rejects.toThrow(/^cancelled$/);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(d.status?.status).toBe("cancelled");
  });

  it("more bytes than announced, or a file that is not a model: refused, the bad file set aside", async () => {
    expect((await run("/more.gguf")).error).toMatch(/more than the 100 bytes it announced/);
    const r = await run("/notmodel.gguf");
    expect(r.error).toMatch(/the downloaded file is not a usable model \(notmodel\.gguf is not a GGUF model file/);
    expect(existsSync(path.join(r.dir, "notmodel.gguf"))).toBe(false);
    expect(readdirSync(r.dir).some((f) => f.startsWith("notmodel.gguf.corrupt-"))).toBe(true);
  });

  it("a good server: the file arrives whole and passes the preflight", async () => {
    const r = await run("/model.gguf", undefined, { ...limits, deadlineMs: 60_000 });
    expect(r.error).toBeNull();
    expect(statSync(r.file!).size).toBe(model.length);
  });
});

/** A real tmpfs of `size` at a fresh mount point (needs root); null when this machine does not allow it. */
function tmpfs(size: string): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), "tandem-tmpfs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
    return dir;
  } catch {
    return null;
  }
}
const probe = tmpfs("64k");
if (probe) execFileSync("umount", [probe]);
if (!probe) console.log("hostileDownloads: skipping the full-disk test: cannot mount a tmpfs here (needs root)");

describe.skipIf(!probe)("a full disk during a download (issue 16, class 2)", () => {
  it("ENOSPC is a clear error, the process lives, and the download resumes once there is room", async () => {
    const mnt = tmpfs("1m")!;
    try {
      const dir = path.join(mnt, "models");
      mkdirSync(dir);
      const full = await run("/model.gguf", dir, { ...limits, deadlineMs: 60_000 });
      expect(full.file).toBeNull();
      expect(full.error).toMatch(/Download failed: the disk is full \(ENOSPC.*\); free some space and download again to resume/);
      const kept = statSync(path.join(dir, "model.gguf.part")).size;
      expect(kept).toBeGreaterThan(0);
      // space returns
      execFileSync("mount", ["-o", "remount,size=64m", mnt]);
      const before = requests["/model.gguf"] ?? 0;
      const again = await run("/model.gguf", dir, { ...limits, deadlineMs: 60_000 });
      expect(again.error).toBeNull();
      expect(readFileSync(again.file!).equals(model)).toBe(true);
      expect(requests["/model.gguf"]! - before).toBe(1); // one ranged request continued the partial file
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});
