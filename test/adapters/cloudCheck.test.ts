/**
 * `npm run cloud:check` against Tandem's own token server (real, in-process) and against loopback
 * servers in the documented shapes of llama.cpp's server, vLLM and SGLang backed by the real stories
 * LLM: matching vocabularies pass, and each kind of mismatch the engine can reveal fails, naming what
 * differed. (The same checks against the real llama-server: llamaServer.test.ts.)
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCloudServer, type CloudServer } from "../../cloud/server.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { getTandemLlama } from "../../inference/llama.js";
import { runCloudCheck, type CheckLine, type CloudCheckReport } from "../../electron/engine/cloud/adapters/vocabCheck.js";
import { deviceVocabulary, paddedHash, unpaddedLength, type DeviceVocabulary } from "../../electron/engine/cloud/adapters/vocabulary.js";
import { hasStories, noteMissingShared, repoRoot } from "../helpers/shared.js";
import { teacherForcedGreedy } from "../helpers/standalone.js";
import { modelTokenizer, RealBackend, startFakeEngine, type EngineKind, type FakeEngine } from "./engines.js";
import { swappedTokenizer, writePaddedVocabulary } from "./vocabFixtures.js";

noteMissingShared("cloud:check tests");
const KINDS: EngineKind[] = ["llama.cpp", "vllm", "sglang"];

/** The checks of a report by name (each name appears once per report). */
function byName(r: CloudCheckReport): Record<string, CheckLine> {
  const out: Record<string, CheckLine> = {};
  for (const c of r.checks) {
    expect(out[c.name], `check ${c.name} reported twice`).toBeUndefined();
    out[c.name] = c;
  }
  return out;
}

describe("vocabulary padding helpers", () => {
  it("find where [PAD] entries start and hash a vocabulary as if padded to another size", () => {
    const tokens = ["a", "b", "c", "[PAD3]", "[PAD4]"];
    expect(unpaddedLength(tokens)).toBe(3);
    expect(unpaddedLength(["a", "[PAD9]", "c"])).toBe(3); // a [PAD] entry at the wrong index is a token
    expect(unpaddedLength(["[PAD0]"])).toBe(0);
    const six = ["a", "b", "c", "[PAD3]", "[PAD4]", "[PAD5]"];
    expect(paddedHash(tokens, 6)).toBe(paddedHash(six, 6));
    expect(paddedHash(tokens, 3)).toBe(paddedHash(["a", "b", "c"], 3));
    expect(paddedHash(tokens, 2)).toBeUndefined(); // would cut a real token
    expect(paddedHash(["a", "b", "x"], 6)).not.toBe(paddedHash(tokens, 6));
  });
});

describe.skipIf(!hasStories)("cloud:check", () => {
  let backend: RealBackend;
  let files: Awaited<ReturnType<typeof ensureFixtures>>;
  const models: LlamaModel[] = [];
  let slm: DeviceVocabulary;
  let gpt2: DeviceVocabulary;
  let padded: DeviceVocabulary;
  let tmp: string;
  /** the LLM's greedy token after the check's prompt, from node-llama-cpp directly */
  let expectedNext: number;
  const engines = new Map<EngineKind, FakeEngine>();

  const vocabOf = async (file: string) => {
    const m = await (await getTandemLlama()).loadModel({ modelPath: file, vocabOnly: true });
    models.push(m);
    return deviceVocabulary(m);
  };

  beforeAll(async () => {
    files = await ensureFixtures();
    backend = await RealBackend.load(files.storiesLlm!);
    slm = await vocabOf(files.storiesSlm!);
    gpt2 = await vocabOf(files.randGpt2);
    tmp = await mkdtemp(path.join(tmpdir(), "tandem-cloudcheck-"));
    const paddedFile = path.join(tmp, "stories-slm-padded.gguf");
    await writePaddedVocabulary(files.storiesSlm!, paddedFile, 640);
    padded = await vocabOf(paddedFile);
    const prompt = [...(slm.bos !== undefined ? [slm.bos] : []), ...slm.tokenize("Once upon a time", false)];
    [expectedNext] = await teacherForcedGreedy(files.storiesLlm!, prompt, prompt.length);
    for (const k of KINDS) engines.set(k, await startFakeEngine(k, backend));
  });
  afterAll(async () => {
    for (const e of engines.values()) await e.close();
    for (const m of models) await m.dispose();
    await backend?.dispose();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("the padded fixture is the stories vocabulary plus [PAD] entries, and the helpers see it so", () => {
    expect(slm.identity.vocabSize).toBe(512);
    expect(slm.realSize).toBe(512);
    expect(padded.identity.vocabSize).toBe(640);
    expect(padded.realSize).toBe(512);
    // the identity hash sets padding aside: the same tokenizer padded to 640 rows has the same hash
    expect(padded.identity.vocabHash).toBe(slm.identity.vocabHash);
    expect(paddedHash(padded.tokens, 512)).toBe(slm.identity.vocabHash);
    expect(padded.tokenize("Once upon a time", false)).toEqual(slm.tokenize("Once upon a time", false));
  });

  for (const kind of KINDS) {
    describe(kind, () => {
      it("same vocabulary: every probe agrees and the next token is the LLM's greedy token → PASS", async () => {
        const r = await runCloudCheck({ kind, url: engines.get(kind)!.url, device: slm });
        const c = byName(r);
        expect(c["text probes"]).toMatchObject({ status: "PASS" });
        expect(c["special tokens"]).toMatchObject({ status: "PASS" });
        expect(c["special tokens"]!.detail).toMatch(/<s> <\/s>/);
        expect(c["token IDs"]).toMatchObject({ status: "PASS" });
        expect(c["next token"]).toMatchObject({ status: "PASS" });
        expect(c["next token"]!.detail).toContain(`token ${expectedNext} `);
        if (kind === "llama.cpp") expect(c["vocabulary size"]).toMatchObject({ status: "PASS", detail: "512 entries on both sides" });
        // this engine's defaults are neutral: its continuation with them is the greedy one
        expect(c["sampling defaults"]).toMatchObject({ status: "PASS" });
        expect(r.result).toBe("PASS");
      });

      it("an engine whose defaults carry a penalty (a model's generation config) → sampling defaults WARN, result still PASS", async () => {
        const e = await startFakeEngine(kind, backend, {
          defaults: { repetitionPenalty: 1.5, presencePenalty: 0.5, frequencyPenalty: 0.5 },
        });
        try {
          const r = await runCloudCheck({ kind, url: e.url, device: slm });
          const c = byName(r);
          expect(c["sampling defaults"], JSON.stringify(c["sampling defaults"])).toMatchObject({ status: "WARN" });
          expect(c["sampling defaults"]!.detail).toMatch(
            /with only the temperature set, token \d+ of the probe's continuation is \d+ instead of the greedy \d+/,
          );
          if (kind === "llama.cpp") expect(c["sampling defaults"]!.detail).toMatch(/the engine reports repeat_penalty 1\.5/);
          if (kind === "sglang") expect(c["sampling defaults"]!.detail).toMatch(/--preferred-sampling-params/);
          if (kind === "vllm") expect(c["sampling defaults"]!.detail).toMatch(/--generation-config vllm/);
          // the adapter itself is unaffected: the next token is still the greedy one
          expect(c["next token"]!.detail).toContain(`token ${expectedNext} `);
          expect(r.result).toBe("PASS");
        } finally {
          await e.close();
        }
      });

      it("two token IDs swapped in the engine's vocabulary → the text probes FAIL, naming where", async () => {
        const a = slm.tokenize("Once", false)[0]!;
        const b = slm.tokenize(" little", false).at(-1)!;
        expect(a).not.toBe(b);
        const e = await startFakeEngine(kind, backend, { tokenizer: swappedTokenizer(modelTokenizer(backend.model), a, b) });
        try {
          const r = await runCloudCheck({ kind, url: e.url, device: slm });
          const c = byName(r);
          expect(c["text probes"]).toMatchObject({ status: "FAIL" });
          expect(c["text probes"]!.detail).toMatch(/tokenise differently: "Once upon a time.*device \[.*\] vs server \[/);
          expect(r.result).toBe("FAIL");
        } finally {
          await e.close();
        }
      });

      it("a different vocabulary altogether (GPT-2 device against the stories engine) → FAIL", async () => {
        const r = await runCloudCheck({ kind, url: engines.get(kind)!.url, device: gpt2 });
        const c = byName(r);
        expect(c["text probes"]).toMatchObject({ status: "FAIL" });
        expect(c["token IDs"]).toMatchObject({ status: "FAIL" });
        if (kind === "llama.cpp") expect(c["vocabulary size"]).toMatchObject({ status: "FAIL" });
        expect(r.result).toBe("FAIL");
      });
    });
  }

  it("vLLM and SGLang without /tokenize: the probes are SKIPPED and the result is UNVERIFIED, not PASS", async () => {
    for (const kind of ["vllm", "sglang"] as const) {
      const e = await startFakeEngine(kind, backend, { tokenize: false });
      try {
        const r = await runCloudCheck({ kind, url: e.url, device: slm });
        const c = byName(r);
        expect(c["text probes"]).toMatchObject({ status: "SKIP" });
        expect(c["text probes"]!.detail).toMatch(/no \/tokenize endpoint/);
        expect(c["next token"]).toMatchObject({ status: "PASS" });
        expect(r.result).toBe("UNVERIFIED");
      } finally {
        await e.close();
      }
    }
  });

  it("llama.cpp: a device vocabulary that differs only in [PAD] entries → size WARN, probes PASS, PASS", async () => {
    const r = await runCloudCheck({ kind: "llama.cpp", url: engines.get("llama.cpp")!.url, device: padded });
    const c = byName(r);
    expect(c["vocabulary size"]).toMatchObject({ status: "WARN" });
    expect(c["vocabulary size"]!.detail).toMatch(/device 640 entries, server 512: the device's entries from 512 on are \[PAD\] padding/);
    expect(c["text probes"]).toMatchObject({ status: "PASS" });
    expect(c["next token"]).toMatchObject({ status: "PASS" });
    expect(r.result).toBe("PASS");
  });

  it("an unreachable engine → FAIL with the connection error, no crash", async () => {
    // a port that was free a moment ago: nothing listens there (fetch refuses port 1 outright)
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const r = await runCloudCheck({ kind: "llama.cpp", url: `http://127.0.0.1:${port}`, device: slm, timeoutMs: 2000 });
    expect(byName(r)["vocabulary size"]).toMatchObject({ status: "FAIL" });
    expect(byName(r)["vocabulary size"]!.detail).toMatch(/cannot connect \(ECONNREFUSED\)/);
    expect(byName(r)["next token"]).toMatchObject({ status: "FAIL" });
    expect(r.result).toBe("FAIL");
  });

  it("an engine that answers without end → FAIL at the reply bound, memory kept, no crash", async () => {
    // every request gets 1 MiB chunks until 100 MiB or the client hangs up
    let sent = 0;
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const flood = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      const pump = () => {
        while (sent < 100 << 20 && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => flood.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(flood.address() as net.AddressInfo).port}`;
      const r = await runCloudCheck({ kind: "llama.cpp", url, device: slm, timeoutMs: 20_000 });
      expect(byName(r)["vocabulary size"]).toMatchObject({ status: "FAIL" });
      expect(byName(r)["vocabulary size"]!.detail).toMatch(/larger than \d+ bytes/);
      expect(r.result).toBe("FAIL");
    } finally {
      flood.closeAllConnections();
      await new Promise((r) => flood.close(r));
    }
  });

  describe("Tandem's token server", () => {
    let server: CloudServer;
    const token = randomBytes(16).toString("hex");
    beforeAll(async () => {
      server = await startCloudServer({ modelPath: files.storiesLlm!, host: "127.0.0.1", port: 0, token, log: () => {} });
    });
    afterAll(async () => server?.close());

    it("same vocabulary → hash PASS, next token PASS (the LLM's greedy token)", async () => {
      const r = await runCloudCheck({ kind: "tandem", url: server.url, token, device: slm });
      const c = byName(r);
      expect(c["vocabulary hash"]).toMatchObject({ status: "PASS" });
      expect(c["next token"]).toMatchObject({ status: "PASS" });
      expect(c["next token"]!.detail).toContain(`token ${expectedNext} `);
      expect(r.result).toBe("PASS");
    });

    it("different vocabulary → hash FAIL naming both models, and the server refuses the session", async () => {
      const r = await runCloudCheck({ kind: "tandem", url: server.url, token, device: gpt2 });
      const c = byName(r);
      expect(c["vocabulary hash"]).toMatchObject({ status: "FAIL" });
      expect(c["vocabulary hash"]!.detail).toMatch(/different vocabularies: device .*rand-gpt2.*50257 tokens.*server .*512 tokens/);
      expect(c["next token"]).toMatchObject({ status: "FAIL" });
      expect(r.result).toBe("FAIL");
    });

    it("vocabularies equal but for [PAD] entries (Qwen2.5 0.5B vs 32B) → PASS, the server opens the session, next token right", async () => {
      const r = await runCloudCheck({ kind: "tandem", url: server.url, token, device: padded });
      const c = byName(r);
      expect(c["vocabulary hash"]).toMatchObject({ status: "PASS" });
      expect(c["vocabulary hash"]!.detail).toMatch(/sizes differ only in \[PAD\] entries \(device 640, server 512\)/);
      expect(c["next token"]).toMatchObject({ status: "PASS" });
      expect(r.result).toBe("PASS");
    });

    it("a wrong token → the next-token call FAILs with the server's 401", async () => {
      const r = await runCloudCheck({ kind: "tandem", url: server.url, token: "wrong-token-wrong-token", device: slm });
      expect(byName(r)["vocabulary hash"]).toMatchObject({ status: "PASS" }); // /health is public
      expect(byName(r)["next token"]).toMatchObject({ status: "FAIL" });
      expect(byName(r)["next token"]!.detail).toMatch(/401|unauthori[sz]ed|token/i);
    });
  });

  describe("the command", () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          [path.join(repoRoot, "node_modules", "tsx", "dist", "cli.mjs"), path.join(repoRoot, "cli", "checkCloud.ts"), ...args],
          {
            cwd: repoRoot,
            env: { ...process.env, NO_COLOR: "1" },
          },
        );
        let out = "";
        let err = "";
        child.stdout.on("data", (b: Buffer) => (out += b.toString()));
        child.stderr.on("data", (b: Buffer) => (err += b.toString()));
        child.on("exit", (code) => resolve({ code, out, err }));
      });

    it("prints PASS per check and exits 0 on a matching engine", async () => {
      const r = await run(["--kind", "vllm", "--url", engines.get("vllm")!.url, "--slm", files.storiesSlm!]);
      expect(r.code, r.out + r.err).toBe(0);
      expect(r.out).toMatch(/^PASS {2}text probes {6}7 texts tokenised to the same \d+ IDs$/m);
      expect(r.out).toMatch(/^PASS {2}next token/m);
      expect(r.out).toMatch(/^RESULT: PASS/m);
    });

    it("exits 1 with FAIL lines on a mismatch, and --json gives the report", async () => {
      const r = await run(["--kind", "llama.cpp", "--url", engines.get("llama.cpp")!.url, "--slm", files.randGpt2, "--json"]);
      expect(r.code, r.out + r.err).toBe(1);
      const report = JSON.parse(r.out.trim().split("\n").at(-1)!) as CloudCheckReport;
      expect(report.result).toBe("FAIL");
      expect(report.checks.find((c) => c.name === "vocabulary size")).toMatchObject({ status: "FAIL" });
    });

    it("exits 2 with the usage on a bad --kind", async () => {
      const r = await run(["--kind", "triton", "--url", "http://127.0.0.1:1"]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--kind must be one of tandem, llama.cpp, vllm, sglang, not "triton"/);
    });
  });
});
