/**
 * The sampling panel's form logic (renderer/components/SamplingPanel.tsx), the settings in words
 * (shared/samplingText.ts) as the inspector and the Markdown export show them. The panel itself runs
 * in Chromium in e2e/sampling.spec.ts.
 */
import { describe, expect, it } from "vitest";
import { SAMPLING_FIELDS, configOf, draftOf, fieldError, samplingLine, seedError } from "../../renderer/components/SamplingPanel";
import { describeParams, describeSettings } from "../../shared/samplingText";
import { SAMPLING_PRESETS, presetConfig, samplingConfigSchema } from "../../shared/sampling";
import { exportConversation } from "../../electron/engine/exportConversation";
import type { Conversation } from "../../shared/bridge";

const field = (key: string) => SAMPLING_FIELDS.find((f) => f.key === key)!;

describe("the sampling form", () => {
  it("round-trips every preset and a fixed seed; the preset is named by the values", () => {
    for (const p of ["precise", "balanced", "creative"] as const) {
      expect(configOf(draftOf(presetConfig(p)))).toEqual(presetConfig(p));
      expect(configOf(draftOf(presetConfig(p, 42)))).toEqual(presetConfig(p, 42));
    }
    const d = draftOf(presetConfig("balanced"));
    const custom = configOf({ ...d, values: { ...d.values, temperature: "0.9" } })!;
    expect(custom).toMatchObject({ preset: "custom", temperature: 0.9, topK: 20 });
    expect(samplingConfigSchema.safeParse(custom).success).toBe(true);
  });

  it("each field's error is its own, in words, and nothing is saved while one is shown", () => {
    expect(fieldError(field("temperature"), "")).toBe("Enter a number.");
    expect(fieldError(field("temperature"), "abc")).toBe("Enter a number.");
    expect(fieldError(field("temperature"), "6")).toBe("From 0 to 5.");
    expect(fieldError(field("topK"), "2.5")).toBe("Enter a whole number.");
    expect(fieldError(field("topP"), "0")).toBe("Above 0, at most 1.");
    expect(fieldError(field("topP"), "1")).toBeNull();
    expect(fieldError(field("repeatPenalty"), "0.9")).toBe("From 1 to 2.");
    expect(fieldError(field("presencePenalty"), "-2")).toBeNull();
    const d = draftOf(presetConfig("creative"));
    expect(configOf({ ...d, values: { ...d.values, minP: "1.5" } })).toBeNull();
    expect(seedError({ ...d, seedMode: "fixed", seed: "" })).toMatch(/whole number from 0 to 4294967295/);
    expect(seedError({ ...d, seedMode: "fixed", seed: "4294967296" })).not.toBeNull();
    expect(seedError({ ...d, seedMode: "new", seed: "junk" })).toBeNull();
    expect(configOf({ ...d, seedMode: "fixed", seed: "-1" })).toBeNull();
  });

  it("every field the settings have is in the form, with a one-line explanation", () => {
    expect(SAMPLING_FIELDS.map((f) => f.key).sort()).toEqual(Object.keys(SAMPLING_PRESETS.precise).sort());
    for (const f of SAMPLING_FIELDS) expect(f.help.length).toBeLessThan(80);
  });
});

describe("sampling in words", () => {
  it("a line for the bar, the settings for the inspector and the export", () => {
    expect(samplingLine(presetConfig("balanced"))).toBe("Balanced · new seed each answer");
    expect(samplingLine({ ...presetConfig("precise", 7), temperature: 0.3, preset: "custom" })).toBe("Custom (temperature 0.3) · seed 7");
    expect(describeParams(SAMPLING_PRESETS.precise)).toBe("greedy (temperature 0)");
    expect(describeSettings({ ...SAMPLING_PRESETS.balanced, seed: 42 })).toBe(
      "Balanced: temperature 0.7 · top-k 20 · top-p 0.8 · repetition penalty 1.05 over 64 tokens · seed 42",
    );
    expect(describeSettings({ ...SAMPLING_PRESETS.creative, presencePenalty: 0.5, seed: 1 })).toBe(
      "Custom: temperature 1 · top-k 100 · top-p 0.95 · min-p 0.05 · repetition penalty 1.1 · presence penalty 0.5 over 64 tokens · seed 1",
    );
  });

  it("the Markdown export names each answer's settings and seed", () => {
    const token = { index: 0, tokenId: 5, text: "Hi", origin: "local", confidence: 0.9, tau: 0.5, cloudLatencyMs: null, slmTokenId: 5 };
    const conv = {
      id: "c1",
      title: "Sampled",
      createdAt: 0,
      updatedAt: 0,
      messages: [
        { id: "u", role: "user", content: "Hello", createdAt: 0 },
        {
          id: "a",
          role: "assistant",
          content: "Hi",
          createdAt: 0,
          tokens: [token],
          status: "complete",
          sampling: { ...SAMPLING_PRESETS.balanced, seed: 42 },
        },
      ],
    } as unknown as Conversation;
    const md = exportConversation(conv, "markdown").content;
    expect(md).toContain(
      "> 1 tokens · 0 from the cloud (0.0%) · 0 fallback\n>\n> sampled: Balanced: temperature 0.7 · top-k 20 · top-p 0.8 · repetition penalty 1.05 over 64 tokens · seed 42\n",
    );
  });
});
