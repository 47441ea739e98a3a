/** The sampling settings on the wire: compact (the fields that do nothing left out), read back exactly. */
import { describe, expect, it } from "vitest";
import { nextRequestSchema, routeRequestSchema } from "../../shared/protocol.js";
import { compactSampling, SAMPLING_PRESETS, samplingWireSchema, type SamplingSettings } from "../../shared/sampling.js";

const settings: SamplingSettings[] = [
  ...Object.values(SAMPLING_PRESETS).map((p) => ({ ...p, seed: 0xffffffff })),
  { temperature: 1.3, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, repeatLastN: 0, presencePenalty: -0.5, frequencyPenalty: 0.25, seed: 0 },
];

describe("sampling on the wire", () => {
  it.each(settings)("reads back what was sent: %o", (s) => {
    const sent = JSON.parse(JSON.stringify(compactSampling(s))) as unknown;
    expect(samplingWireSchema.parse(sent)).toEqual(s);
    expect(nextRequestSchema(1000).parse({ base: 0, tokens: [1], sampling: sent }).sampling).toEqual(s);
    const route = { base: 0, tokens: [1], tau: 0.5, router: { kind: "confidence" }, position: 0, max: 4, sampling: sent };
    expect(routeRequestSchema(1000).parse(route).sampling).toEqual(s);
  });

  it("costs at most 100 bytes a call at Balanced with the longest seed", () => {
    const bytes = JSON.stringify({ sampling: compactSampling({ ...SAMPLING_PRESETS.balanced, seed: 0xffffffff }) }).length;
    expect(bytes).toBeLessThanOrEqual(100);
  });

  it("refuses settings out of range, and temperature or seed left out", () => {
    expect(() => samplingWireSchema.parse({ temperature: 0.7 })).toThrow();
    expect(() => samplingWireSchema.parse({ seed: 1 })).toThrow();
    expect(() => samplingWireSchema.parse({ temperature: 0.7, seed: 1, topP: 0 })).toThrow();
    expect(() => samplingWireSchema.parse({ temperature: 0.7, seed: -1 })).toThrow();
  });
});
