/** Streaming text: multi-byte characters split across tokens arrive intact; stop strings are cut. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenTextStream, longestStopPrefixSuffix } from "../../electron/engine/textStream.js";
import { LocalModel } from "../../inference/localModel.js";
import { ensureFixtures } from "../../models/fixtures.js";
import { hasStories, noteMissingShared, stories260K } from "../helpers/shared.js";

const SAMPLES = ["Hi 🦙 llama! 你好，世界。 naïve café 👩‍👩‍👧 done", "🎉🎉 x 日本語のテキスト", "a😀b"];

function streamAll(model: LocalModel, text: string, stops: string[] = []) {
  const tokens = model.tokenizeText(text).filter((t) => t !== model.model.tokens.bos);
  const s = new TokenTextStream((t, last) => model.detokenize(t, last), stops);
  const chunks = tokens.map((t) => s.push(t).text);
  chunks.push(s.flush().text);
  return { tokens, chunks, joined: chunks.join(""), stream: s };
}

describe.each([
  ["the Qwen2 vocabulary (byte-level BPE)", async () => (await ensureFixtures()).randA, true],
  ["the stories260K vocabulary (SentencePiece byte fallback)", async () => (hasStories ? stories260K : null), hasStories],
])("UTF-8 streaming with %s", (_name, file, available) => {
  let model: LocalModel | undefined;
  beforeAll(async () => {
    const f = await file();
    if (f) model = await LocalModel.load(f, { contextSize: 256 });
    else noteMissingShared("UTF-8 streaming on the stories260K vocabulary");
  });
  afterAll(async () => model?.dispose());

  it.skipIf(!available)("splits emoji and CJK across tokens, and streams them intact", async () => {
    let splits = 0;
    for (const text of SAMPLES) {
      const { tokens, chunks, joined } = streamAll(model!, text);
      const whole = model!.detokenize(tokens);
      expect(joined).toBe(whole);
      expect(whole.replace(/^ /, "")).toBe(text);
      // the point of the test: some character really was split across tokens
      const naive = tokens.map((t) => model!.detokenize([t])).join("");
      if (naive.includes("\uFFFD")) splits++;
      for (const c of chunks) expect(c).not.toContain("\uFFFD");
    }
    expect(splits, "no sample split a character across tokens: the test would prove nothing").toBeGreaterThan(0);
  });

  it.skipIf(!available)("cuts the answer at a stop string and never shows its start early", async () => {
    const { chunks, joined, stream } = streamAll(model!, "one two 🦙 three END four", ["END"]);
    expect(stream.stopped).toBe(true);
    expect(joined.trimStart()).toBe("one two 🦙 three ");
    expect(chunks.some((c) => c.includes("E"))).toBe(false);
  });
});

describe("stop-string prefix hold-back", () => {
  it("holds back the longest suffix that could start a stop string", () => {
    expect(longestStopPrefixSuffix("hello <|e", ["<|end|>"])).toBe(3);
    expect(longestStopPrefixSuffix("hello", ["<|end|>"])).toBe(0);
    expect(longestStopPrefixSuffix("ab", ["abc", "b"])).toBe(2);
  });
  it("releases held text when generation ends without the stop string", () => {
    const s = new TokenTextStream((t) => t.map((x) => String.fromCharCode(x)).join(""), ["xyz"]);
    expect(s.push("a".charCodeAt(0)).text).toBe("a");
    expect(s.push("x".charCodeAt(0)).text).toBe("");
    expect(s.flush().text).toBe("x");
    expect(s.text).toBe("ax");
  });
});
