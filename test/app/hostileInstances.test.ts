/**
 * Issue 16, class 5: two instances on one data folder. Real processes: the second engine on a folder
 * is refused with a clear error while the first runs (and in the same process too); a lock left by a
 * SIGKILLed instance is stale and taken over; a clean close releases it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DataFolderLockedError, LOCK_NAME, lockDataFolder } from "../../electron/engine/dataLock.js";
import { TandemService } from "../../electron/engine/service.js";

const here = path.dirname(fileURLToPath(import.meta.url));

interface Child {
  proc: ChildProcess;
  /** the first line it printed */
  first: Promise<string>;
  exit: Promise<number | null>;
}

function engine(dataDir: string): Child {
  // node itself (tsx as a loader, not its wrapper process): the pid in the lock is this child's
  const proc = spawn(process.execPath, ["--import", "tsx", path.join(here, "instances", "engine.ts"), dataDir], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  const first = new Promise<string>((resolve, reject) => {
    proc.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(out.split("\n")[0]);
    });
    proc.on("exit", () => (out.includes("\n") ? resolve(out.split("\n")[0]) : reject(new Error(`child exited: ${err}`))));
  });
  const exit = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  return { proc, first, exit };
}

const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-two-"));

describe("two instances on one data folder (issue 16, class 5)", () => {
  it("a second process is refused with a clear error while the first runs; the first's work is intact", async () => {
    const dir = tmp();
    const a = engine(dir);
    expect(await a.first).toMatch(/^started /);
    const b = engine(dir);
    expect(await b.first).toMatch(
      new RegExp(
        `^refused The data folder .* is in use by another Tandem instance \\(process ${a.proc.pid}, started .*Close that instance first`,
      ),
    );
    expect(await b.exit).toBe(3);
    // and this process too (an engine in the same process as a running one is refused the same way)
    await expect(TandemService.start({ dataDir: dir, slm: null })).rejects.toBeInstanceOf(DataFolderLockedError);
    a.proc.stdin!.end(); // a clean close releases the folder
    expect(await a.exit).toBe(0);
    expect(existsSync(path.join(dir, LOCK_NAME))).toBe(false);
    const s = await TandemService.start({ dataDir: dir, slm: null, selfDistill: false });
    try {
      expect((await s.listConversations({})).map((c) => c.title)).toEqual([`from ${a.proc.pid}`]);
    } finally {
      await s.close();
    }
  }, 60_000);

  it("a lock left by a SIGKILLed instance is stale: the next start takes it over", async () => {
    const dir = tmp();
    const a = engine(dir);
    expect(await a.first).toMatch(/^started /);
    a.proc.kill("SIGKILL");
    await a.exit;
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_NAME), "utf8")).pid).toBe(a.proc.pid);
    const b = engine(dir);
    expect(await b.first).toMatch(/^started /);
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_NAME), "utf8")).pid).toBe(b.proc.pid);
    // in this process, while b holds it: refused
    await expect(TandemService.start({ dataDir: dir, slm: null })).rejects.toThrow(new RegExp(`process ${b.proc.pid}`));
    b.proc.stdin!.end();
    expect(await b.exit).toBe(0);
  }, 60_000);

  it("two engines started at the same moment on one folder: exactly one runs", async () => {
    const dir = tmp();
    const kids = [engine(dir), engine(dir), engine(dir)];
    const firsts = await Promise.all(kids.map((k) => k.first));
    expect(firsts.filter((l) => l.startsWith("started"))).toHaveLength(1);
    expect(firsts.filter((l) => l.startsWith("refused"))).toHaveLength(2);
    for (const k of kids) k.proc.stdin!.end();
    await Promise.all(kids.map((k) => k.exit));
  }, 60_000);

  it("browser mode on a folder in use is refused before it loads any model", async () => {
    const dir = tmp();
    const held = await lockDataFolder(dir);
    try {
      const web = spawn(
        process.execPath,
        ["--import", "tsx", path.join(here, "..", "..", "web", "main.ts"), "--data", dir, "--port", "0"],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      web.stdout!.on("data", (d) => (out += d));
      web.stderr!.on("data", (d) => (out += d));
      const code = await new Promise<number | null>((r) => web.on("exit", r));
      expect(code).toBe(1);
      expect(out).toMatch(new RegExp(`in use by another Tandem instance \\(process ${process.pid}`));
      // nothing was loaded: no fixtures made, no in-process cloud started
      expect(out).not.toMatch(/cloud: in-process|fixtures:/);
    } finally {
      await held.release();
    }
  }, 60_000);
});
