/**
 * A model given by URL (`--slm`, `TANDEM_SLM`, a remembered setting) goes through the bounded
 * downloader: a real HTTP server serving a real model, a file that is not a model, and a server that
 * stalls after announcing a length (the caller's cancel ends it, with no path returned).
 */
import { readFileSync } from "node:fs";
import { mkdtemp, readdir } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveModelSource } from "../../inference/modelFile.js";
import { ModelFileError, preflightModelFile } from "../../inference/modelPreflight.js";
import { ensureFixtures } from "../../models/fixtures.js";

let server: http.Server;
let base = "";
let model: Buffer;

beforeAll(async () => {
  model = readFileSync((await ensureFixtures()).randA);
  server = http.createServer((req, res) => {
    if (req.url === "/good.gguf") {
      res.writeHead(200, { "content-length": String(model.length) });
      res.end(model);
    } else if (req.url === "/notamodel.gguf") {
      res.writeHead(200, { "content-length": "11" });
      res.end("hello world");
    } else if (req.url === "/stall.gguf") {
      res.writeHead(200, { "content-length": "1000000" });
      res.write(Buffer.alloc(1000)); // then nothing, ever
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe("resolveModelSource with a URL", () => {
  it("downloads a model into the given folder and returns a file that passes the preflight; a second call reuses it", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandem-resolve-"));
    const file = await resolveModelSource(`${base}/good.gguf`, { directory: dir });
    expect(path.dirname(file)).toBe(dir);
    expect(readFileSync(file).equals(model)).toBe(true);
    await preflightModelFile(file);
    expect(await resolveModelSource(`${base}/good.gguf`, { directory: dir, download: false })).toBe(file);
  });

  it("a file that is not a model: a ModelFileError, the file set aside, no path returned", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandem-resolve-"));
    const err = await resolveModelSource(`${base}/notamodel.gguf`, { directory: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect((err as Error).message).toMatch(/not a usable model/);
    expect((await readdir(dir)).some((f) => f === "notamodel.gguf")).toBe(false);
  });

  it("a server that stalls: the caller's cancel ends the download at once, with no path", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandem-resolve-"));
    const abort = new AbortController();
    const t0 = performance.now();
    setTimeout(() => abort.abort(), 500);
    const err = await resolveModelSource(`${base}/stall.gguf`, { directory: dir, signal: abort.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect((err as Error).message).toMatch(/cancelled/);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect((await readdir(dir)).includes("stall.gguf")).toBe(false);
  });
});
