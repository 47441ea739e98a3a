/**
 * History survives crashes: a child process writes conversations token by token the way the engine
 * service does (crash/storeWriter.ts) and is killed with SIGKILL at random moments, many times over the
 * same data folder, each restart recovering what the previous one left. After every kill a copy of the
 * folder is opened as the app would open it at start, and checked against the child's own reports:
 *
 *   - nothing is corrupt: no notice, every conversation loads, every persisted token is byte for byte
 *     the token written at that position, every text matches its tokens;
 *   - nothing committed is lost: each operation the child reported as done ("C", its promise resolved:
 *     for a token, its journal line was handed to the OS) is on disk;
 *   - at most the operation in flight is lost, so at most the one token being written: the state on
 *     disk is exactly the committed state, or the committed state plus the operation in flight.
 *
 * A second test does the same with the real engine service and a real model (fewer kills: each child
 * loads a model): every token the UI was sent survives.
 */
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConversationStore } from "../../electron/engine/conversationStore.js";
import { storiesPair } from "../helpers/pair.js";
import { noteMissingShared, repoRoot } from "../helpers/shared.js";
import {
  afterRestart,
  applyOp,
  cloneModel,
  describeModel,
  modelOfStore,
  mulberry32,
  parseReport,
  sameModel,
  type Model,
  type Op,
} from "./crash/crashModel.js";

const KILLS = Number(process.env.TANDEM_CRASH_KILLS ?? 100);
const SEED = Number(process.env.TANDEM_CRASH_SEED ?? 20261106);
const SERVICE_KILLS = Number(process.env.TANDEM_CRASH_SERVICE_KILLS ?? 4);
// A process crash (what SIGKILL simulates) loses nothing the OS already has: fsync guards against power
// loss, not this. On tmpfs fsync is free, so the child gets through more operations between kills and
// more kills fit in the time; the write path (temporary file, rename, appends) is the same.
const scratch = process.env.TANDEM_CRASH_DIR ?? (existsSync("/dev/shm") ? "/dev/shm" : tmpdir());

// The children are bundled once with esbuild (as electron/build.ts bundles the shell): a plain `node`
// start takes ~50 ms where tsx takes ~400 ms, which is what lets 150 kills fit in CI. The bundle lives
// under node_modules/.cache so that node-llama-cpp resolves from it.
const bundleDir = path.join(repoRoot, "node_modules", ".cache", "tandem-crash-test");
const bundle = async (entry: string, out: string) => {
  await build({
    entryPoints: [path.join(repoRoot, "test", "app", "crash", entry)],
    outfile: path.join(bundleDir, out),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "warning",
  });
  return path.join(bundleDir, out);
};

interface Run {
  lines: string[];
  stderr: string;
}

/** Runs a child until `killWhen` says when to SIGKILL it; returns every line it printed before dying. */
function runAndKill(
  script: string,
  args: string[],
  killWhen: (lines: string[], kill: () => void) => void,
  env: NodeJS.ProcessEnv = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    const lines: string[] = [];
    let partial = "";
    let stderr = "";
    let killed = false;
    const kill = () => {
      if (!killed) {
        killed = true;
        child.kill("SIGKILL");
      }
    };
    child.stdout.on("data", (d: Buffer) => {
      const parts = (partial + d.toString("utf8")).split("\n");
      partial = parts.pop()!;
      lines.push(...parts);
      killWhen(lines, kill);
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    killWhen(lines, kill);
    // "close": the process is gone and its pipes are drained, so `lines` holds everything it printed
    child.once("close", (code, signal) => {
      if (signal !== "SIGKILL") reject(new Error(`the writer exited by itself (code ${code}, signal ${signal}):\n${stderr}`));
      else resolve({ lines, stderr });
    });
  });
}

describe("history survives SIGKILL", () => {
  let writer: string;
  let serviceWriter: string;
  const pairPromise = storiesPair();
  beforeAll(async () => {
    mkdirSync(bundleDir, { recursive: true });
    [writer, serviceWriter] = await Promise.all([
      bundle("storeWriter.ts", "storeWriter.mjs"),
      bundle("serviceWriter.ts", "serviceWriter.mjs"),
    ]);
  });

  const summary: string[] = [];
  afterAll(() => {
    for (const s of summary) console.log(s);
  });

  it(
    `${KILLS} kills at random points while writing token by token: never corrupt, at most the one token in flight lost`,
    { timeout: 180_000 },
    async () => {
      const dataDir = mkdtempSync(path.join(scratch, "tandem-crash-"));
      const rand = mulberry32(SEED);
      let model: Model = new Map();
      const stats = {
        kills: 0,
        duringRecovery: 0,
        inFlight: {} as Record<string, number>,
        tokensCommitted: 0,
        tokensLost: 0,
        committedLost: 0,
        conversationsChecked: 0,
        answersChecked: 0,
      };
      const started = performance.now();

      for (let k = 0; k < KILLS; k++) {
        // Where the kill lands: after a random delay once the child writes (anywhere, weighted by how long
        // each step takes: snapshots more than token appends), right after a random number of reported
        // steps (weighted by count: mostly token appends), or during start-up recovery.
        const mode = rand();
        const delayMs = rand() * 30;
        const afterLines = 2 + Math.floor(rand() * 400);
        let timer: NodeJS.Timeout | undefined;
        const run = await runAndKill(writer, [dataDir, String(SEED + k)], (lines, kill) => {
          if (timer) return;
          if (mode < 0.1) {
            if (lines.includes("loading")) timer = setTimeout(kill, delayMs / 6);
          } else if (mode < 0.55) {
            if (lines.length > 1) timer = setTimeout(kill, delayMs);
          } else if (lines.length >= afterLines) kill();
        });
        clearTimeout(timer);
        stats.kills++;

        // the child's reports: committed operations move the model; the last "I" without its "C" is in flight
        let inFlight: Op | null = null;
        let opened = false;
        for (const line of run.lines) {
          if (line === "loading") continue;
          if (line.startsWith("open ")) {
            opened = true;
            expect(line, "the writer found a corrupt file at start").toBe("open 0");
            continue;
          }
          const r = parseReport(line);
          if (!r) throw new Error(`unexpected line from the writer: ${line}\n${run.stderr}`);
          if (r.kind === "I") inFlight = r.op;
          else {
            applyOp(model, r.op, r.op.op === "create" ? r.op.args[0] : undefined);
            if (r.op.op === "tok") stats.tokensCommitted++;
            inFlight = null;
          }
        }
        if (!opened) stats.duringRecovery++;
        const phase = inFlight?.op ?? (opened ? "between operations" : "recovery");
        stats.inFlight[phase] = (stats.inFlight[phase] ?? 0) + 1;

        // open a copy as the app would at start (the next child recovers the original itself)
        const copy = mkdtempSync(path.join(scratch, "tandem-crash-check-"));
        cpSync(dataDir, copy, { recursive: true });
        const store = await ConversationStore.open(copy);
        expect(store.notices, `kill ${k}: the store reported damage`).toEqual([]);
        const onDisk = modelOfStore(store.list().map((m) => store.get(m.id))); // throws on a wrong token or text
        rmSync(copy, { recursive: true, force: true });

        const committed = afterRestart(model);
        let withInFlight: Model | null = null;
        if (inFlight) {
          withInFlight = cloneModel(model);
          applyOp(withInFlight, inFlight);
          withInFlight = afterRestart(withInFlight);
        }
        const ok = sameModel(onDisk, committed) || (withInFlight !== null && sameModel(onDisk, withInFlight));
        if (!ok) {
          throw new Error(
            `kill ${k} (in flight: ${inFlight ? `${inFlight.op} ${inFlight.args.join(" ")}` : "nothing"}): the store holds\n${describeModel(onDisk)}\n` +
              `but the child committed\n${describeModel(committed)}${withInFlight ? `\nor, with the operation in flight,\n${describeModel(withInFlight)}` : ""}`,
          );
        }
        // tokens lost: only a token in flight can be missing, and only that one
        if (inFlight?.op === "tok") {
          const [convId, msgId, n] = inFlight.args;
          const kept = onDisk.get(convId)?.messages.find((x) => x.id === msgId)?.tokens ?? -1;
          expect(kept === Number(n) || kept === Number(n) - 1, `kill ${k}: ${kept} tokens kept of ${n} generated`).toBe(true);
          stats.tokensLost += Number(n) - kept;
        }
        stats.conversationsChecked += onDisk.size;
        stats.answersChecked += [...onDisk.values()].reduce((s, c) => s + c.messages.filter((x) => x.role === "assistant").length, 0);
        model = onDisk; // what the next child starts from
      }

      const secs = ((performance.now() - started) / 1000).toFixed(1);
      summary.push(
        `crash test (store): ${stats.kills} SIGKILLs (${stats.duringRecovery} during start-up recovery) in ${secs} s; ` +
          `in flight at the kill: ${Object.entries(stats.inFlight)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}; ` +
          `${stats.conversationsChecked} conversation loads / ${stats.answersChecked} answers checked; ` +
          `${stats.tokensCommitted} tokens committed, 0 committed tokens lost, ${stats.tokensLost} in-flight tokens lost (at most 1 per kill); corrupt files: 0`,
      );
      // the kills must actually have hit the interesting moments, or the test proves little
      expect(stats.inFlight.tok ?? 0).toBeGreaterThan(KILLS / 4);
      expect((stats.inFlight.start ?? 0) + (stats.inFlight.end ?? 0)).toBeGreaterThan(0);
      expect(stats.tokensCommitted).toBeGreaterThan(KILLS * 5);
    },
  );

  it(
    `the engine service with a real model, killed ${SERVICE_KILLS} times mid-answer: every token the UI was sent survives`,
    { timeout: 180_000 },
    async () => {
      const pair = await pairPromise;
      if (!pair) return noteMissingShared("service crash test");
      const dataDir = mkdtempSync(path.join(scratch, "tandem-crash-svc-"));
      const rand = mulberry32(SEED + 1);
      let shown = 0;
      let persistedBeyondShown = 0;
      for (let k = 0; k < SERVICE_KILLS; k++) {
        const delayMs = 100 + rand() * 700;
        let timer: NodeJS.Timeout | undefined;
        const run = await runAndKill(
          serviceWriter,
          [dataDir, pair.slm],
          (lines, kill) => {
            // timed from the first token the UI is sent, not from "ready": the first answer waits for the
            // engine's start-up work (the share calibration), which takes longer on a loaded machine
            if (!timer && lines.some((l) => l.startsWith("D "))) timer = setTimeout(kill, delayMs);
          },
          { TANDEM_THREADS: "1" },
        );
        clearTimeout(timer);
        // "D <conversation> <message> <n>": the service sent the UI tokens up to n of that answer
        const sent = new Map<string, { conv: string; n: number }>();
        for (const line of run.lines) {
          const [kind, conv, msg, n] = line.split(" ");
          if (kind === "D") sent.set(msg, { conv, n: Number(n) });
        }
        expect(sent.size, `kill ${k}: no answer streamed before the kill\n${run.stderr}`).toBeGreaterThan(0);
        const store = await ConversationStore.open(dataDir); // the app's own start-up: recovers in place
        expect(store.notices).toEqual([]);
        for (const [msgId, { conv, n }] of sent) {
          const msg = store.get(conv).messages.find((m) => m.id === msgId);
          expect(msg, `kill ${k}: answer ${msgId} is gone`).toBeDefined();
          const kept = msg!.tokens!.length;
          expect(kept, `kill ${k}: the UI saw ${n} tokens of ${msgId}, ${kept} were kept`).toBeGreaterThanOrEqual(n);
          expect(msg!.tokens!.map((t) => t.index)).toEqual(msg!.tokens!.map((_, i) => i));
          // a finished answer's text also holds what the decoder held back to the end; a cut one is its tokens
          if (msg!.status !== "complete") expect(msg!.content).toBe(msg!.tokens!.map((t) => t.text).join(""));
          expect(["complete", "stopped"]).toContain(msg!.status);
          shown += n;
          persistedBeyondShown += kept - n;
        }
        await store.flush();
      }
      summary.push(
        `crash test (service, real model): ${SERVICE_KILLS} SIGKILLs mid-answer; ${shown} tokens shown to the UI, 0 lost ` +
          `(${persistedBeyondShown} more were committed but not yet sent to the UI)`,
      );
    },
  );
});
