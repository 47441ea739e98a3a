/** Browser mode's host: static files with the CSP, and the WebSocket bridge's guards (real sockets). */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BRIDGE_OPS, type BridgeApi, type BridgeEvent, type WireMessage } from "../../shared/bridge.js";
import { CONTENT_SECURITY_POLICY, startWebServer, type WebServer } from "../../web/server.js";

const listeners = new Set<(e: BridgeEvent) => void>();
const api = Object.fromEntries(
  BRIDGE_OPS.map((op) => [
    op,
    async () => {
      throw new Error(`${op} not scripted`);
    },
  ]),
) as unknown as BridgeApi;
api.setTau = async ({ tau }) => {
  listeners.forEach((l) => l({ type: "tau", tau }));
  return { tau };
};

let web: WebServer;
beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "tandem-static-"));
  writeFileSync(path.join(dir, "index.html"), "<!doctype html><title>t</title>");
  writeFileSync(path.join(tmpdir(), "secret.txt"), "secret");
  web = await startWebServer({ staticDir: dir, api, subscribe: (l) => (listeners.add(l), () => listeners.delete(l)), port: 0 });
});
afterAll(() => web?.close());

const open = (origin: string | undefined, host?: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(web.url.replace("http", "ws") + "bridge", {
      ...(origin ? { origin } : {}),
      ...(host ? { headers: { host } } : {}),
    });
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  });

describe("browser-mode host", () => {
  it("serves the app with a strict CSP and nothing outside its folder", async () => {
    const res = await fetch(web.url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toBe(CONTENT_SECURITY_POLICY);
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).not.toContain("unsafe");
    const escape = await fetch(web.url + "..%2fsecret.txt");
    expect([403, 404]).toContain(escape.status);
    expect(await escape.text()).not.toBe("secret");
  });

  it("refuses a WebSocket from another origin (cross-site hijacking) or without one", async () => {
    await expect(open("http://evil.example")).rejects.toThrow(/403/);
    await expect(open(undefined)).rejects.toThrow(/403/);
  });

  it("refuses a page reached through DNS rebinding (another site's name pointed at 127.0.0.1: same origin, not loopback)", async () => {
    const port = new URL(web.url).port;
    await expect(open(`http://rebind.evil.example:${port}`, `rebind.evil.example:${port}`)).rejects.toThrow(/403/);
    // the same page under a loopback name is fine
    const ws = await open(`http://localhost:${port}`, `localhost:${port}`);
    ws.close();
  });

  it("dispatches a valid call, reports errors per call, pushes events, and closes on a malformed call", async () => {
    const ws = await open(web.url.replace(/\/$/, ""));
    const got: WireMessage[] = [];
    ws.on("message", (d) => got.push(JSON.parse(d.toString())));
    ws.send(JSON.stringify({ kind: "call", id: 1, op: "setTau", arg: { tau: 0.25 } }));
    ws.send(JSON.stringify({ kind: "call", id: 2, op: "stats", arg: {} }));
    while (got.length < 3) await new Promise((r) => setTimeout(r, 5));
    expect(got).toContainEqual({ kind: "event", event: { type: "tau", tau: 0.25 } });
    expect(got).toContainEqual({ kind: "result", id: 1, ok: true, result: { tau: 0.25 } });
    expect(got).toContainEqual({ kind: "result", id: 2, ok: false, error: "stats not scripted" });
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.send(JSON.stringify({ kind: "call", id: 3, op: "constructor", arg: {} }));
    expect(await closed).toBe(1008);
  });
});
