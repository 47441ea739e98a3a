/**
 * Browser mode's host as a real process (`web/main.ts` with the fixture pair and its in-process cloud)
 * under requests any web page, or a broken client, can send: none may end the process. Each probe is
 * followed by a check that the host still serves the app and its cloud still answers.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { repoRoot } from "../helpers/shared.js";

let child: ChildProcess;
let webUrl = "";
let cloudUrl = "";
let output = "";

beforeAll(async () => {
  const data = mkdtempSync(path.join(tmpdir(), "tandem-webhost-"));
  const statics = mkdtempSync(path.join(tmpdir(), "tandem-webstatic-"));
  writeFileSync(path.join(statics, "index.html"), "<!doctype html><title>t</title>");
  child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(repoRoot, "web", "main.ts"), "--port", "0", "--data", data, "--static", statics],
    {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TANDEM_THREADS: "1" },
    },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`web host did not start: ${output}`)), 90_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const web = output.match(/Tandem browser mode: (http:\/\/\S+)/);
      const cloud = output.match(/in-process token server at (http:\/\/\S+)/);
      if (web) {
        webUrl = web[1];
        cloudUrl = cloud?.[1] ?? "";
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`web host exited (${code}): ${output}`)));
  });
});

afterAll(() => {
  child?.kill("SIGKILL");
});

/** One raw HTTP/1.1 exchange: what a browser or a script could put on the wire, unnormalised. */
function rawRequest(text: string): Promise<string> {
  const { port } = new URL(webUrl);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), "127.0.0.1");
    let got = "";
    socket.on("data", (d) => (got += d.toString()));
    socket.on("close", () => resolve(got));
    socket.on("error", () => resolve(got));
    socket.write(text);
    setTimeout(() => socket.destroy(), 3000);
  });
}

async function expectAlive(): Promise<void> {
  expect(child.exitCode, output).toBeNull();
  const page = await fetch(webUrl);
  expect(page.status).toBe(200);
  if (cloudUrl) expect((await fetch(cloudUrl + "/health")).status).toBe(200);
}

const bridgeUrl = () => webUrl.replace("http", "ws") + "bridge";
const origin = () => webUrl.replace(/\/$/, "");

describe("browser-mode host: nothing a request holds ends the process", () => {
  it("answers malformed paths (lone or invalid %-escapes, NUL) with 400, as an <img> could request them", async () => {
    expect(cloudUrl, "the host should run its in-process cloud").not.toBe("");
    for (const p of ["/%E0.js", "/%", "/%zz", "/a%00b.js", "/%C0%AF.css", "/%ED%A0%80.png"]) {
      const reply = await rawRequest(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      expect(reply, p).toMatch(/^HTTP\/1\.1 400 /);
    }
    await expectAlive();
  });

  it("survives malformed request lines, absolute-form URLs and bad upgrades", async () => {
    const probes = [
      "GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET //%E0/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "\x00\x01\x02 garbage\r\n\r\n",
      "GET /bridge%E0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
      "GET http://[/bridge HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
      `GET /bridge HTTP/1.1\r\nHost: ${new URL(webUrl).host}\r\nOrigin: ${origin()}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99\r\n\r\n`,
    ];
    for (const p of probes) await rawRequest(p);
    await expectAlive();
  });

  it("survives invalid WebSocket frames and calls that fail in every way, answering each call", async () => {
    const ws = new WebSocket(bridgeUrl(), { origin: origin() });
    await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.on("error", () => {});
    // a text frame that is not UTF-8: the server's socket reports an error event
    ws.send(Buffer.from([0xff, 0xfe, 0xc0]), { binary: false });
    expect(await closed).toBe(1007);

    const ws2 = new WebSocket(bridgeUrl(), { origin: origin() });
    await new Promise((r, j) => (ws2.once("open", r), ws2.once("error", j)));
    const replies: Array<{ id: number; ok: boolean }> = [];
    ws2.on("message", (d) => {
      const m = JSON.parse(d.toString());
      if (m.kind === "result") replies.push(m);
    });
    // arguments of the wrong shape for real operations: each a failed result, never a dead host
    const calls = [
      { op: "setTau", arg: { tau: "high" } },
      { op: "getConversation", arg: { id: "../../etc/passwd" } },
      { op: "send", arg: { text: { nested: true } } },
      { op: "deleteConversation", arg: { id: 42 } },
    ];
    calls.forEach((c, i) => ws2.send(JSON.stringify({ kind: "call", id: i + 1, ...c })));
    const deadline = Date.now() + 20_000;
    while (replies.length < calls.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(replies.map((r) => r.id).sort()).toEqual([1, 2, 3, 4]);
    ws2.close();
    await expectAlive();
  });
});
