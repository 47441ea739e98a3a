/**
 * Untrusted text in the terminal: a model file whose name and vocabulary carry escape sequences (retitle
 * the window, clear the screen, a hyperlink, a single-character C1 CSI) run through the real terminal
 * chat; nothing it prints may hold a control character other than newline and tab (and, with colour,
 * the chat's own colour codes).
 */
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { terminalJson, terminalSafe } from "../../cli/terminalText.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { copiedTensor, GgufType, readGguf, setKv, writeGguf, type GgufArray } from "../../inference/gguf.js";
import { hasStories, repoRoot } from "../helpers/shared.js";

const run = promisify(execFile);
const HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\\u009b31m\r";
// what may remain: text, newline, tab, and our own SGR colour codes
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const OUR_COLOURS = /\x1b\[(?:0|32|33|1;35)m/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe("terminalSafe", () => {
  it("makes every control character but newline and tab visible, and leaves other text alone", () => {
    expect(terminalSafe("a\tb\nc")).toBe("a\tb\nc");
    expect(terminalSafe("héllo ✓ 日本")).toBe("héllo ✓ 日本");
    const safe = terminalSafe(HOSTILE);
    expect(safe).not.toMatch(CONTROL);
    expect(safe).toContain("\\x1B]0;pwned\\x07");
    expect(safe).toContain("\\x9B31m");
    expect(safe).toContain("\\x0D");
  });

  it("terminalJson stays valid JSON of the same value, with DEL and C1 escaped too", () => {
    const v = { text: HOSTILE + "\u007f", n: 1 };
    const line = terminalJson(v);
    expect(line).not.toMatch(CONTROL);
    expect(JSON.parse(line)).toEqual(v);
  });
});

describe.skipIf(!hasStories)("terminal chat with a hostile model file (needs ../shared/models/stories260K.gguf)", () => {
  let hostile = "";
  beforeAll(async () => {
    const f = await ensureFixtures();
    const src = readGguf(f.storiesSlm!);
    const tokens = src.get("tokenizer.ggml.tokens") as GgufArray;
    const types = src.get("tokenizer.ggml.token_type") as GgufArray;
    // every ordinary token's text carries the sequences, so whatever the model writes carries them
    const items = tokens.items.map((t, i) => (Number(types.items[i]) === 1 ? `${HOSTILE}${String(t)}` : t));
    let kvs = setKv(src.kvs, "tokenizer.ggml.tokens", { itemType: tokens.itemType, items });
    kvs = setKv(kvs, "general.name", `evil${HOSTILE}model`, GgufType.STRING);
    hostile = path.join(mkdtempSync(path.join(tmpdir(), "tandem-hostile-term-")), "hostile.gguf");
    await writeGguf(hostile, { version: src.version as 2 | 3, kvs, tensors: src.tensors.map((t) => copiedTensor(src, t)) });
  });

  const chat = (args: string[]) =>
    run(
      process.execPath,
      ["--import", "tsx", path.join(repoRoot, "cli", "chat.ts"), "--slm", hostile, "--tau", "0", "--max-tokens", "12", ...args],
      {
        cwd: repoRoot,
        timeout: 120_000,
        env: { ...process.env, TANDEM_THREADS: "1", NO_COLOR: "" },
      },
    );

  it("prints the model's name and text with every escape sequence made visible", async () => {
    const { stdout, stderr } = await chat(["Once upon"]);
    const printed = (stdout + stderr).replace(OUR_COLOURS, "");
    expect(printed).not.toMatch(CONTROL);
    expect(stderr).toContain("\\x1B]0;pwned\\x07"); // the name, shown, not obeyed
    expect(stdout).toContain("\\x1B[2J"); // the model's text likewise
  });

  it("--json lines carry the same text, escaped, and parse back to it", async () => {
    const { stdout } = await chat(["--json", "Once upon"]);
    // eslint-disable-next-line no-control-regex -- JSON lines hold no raw control character, tab included
    expect(stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const summary = events.pop().summary;
    expect(summary.text).toContain("\x1b[2J");
    expect(summary.text).toBe(events.map((e) => e.text).join(""));
  });
});
