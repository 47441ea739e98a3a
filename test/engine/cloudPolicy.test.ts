import { describe, expect, it } from "vitest";
import { ContinuationPolicy, GuessPolicy } from "../../electron/engine/cloudPolicy.js";

describe("ContinuationPolicy: when a call asks for a continuation", () => {
  it("inside a cluster always; elsewhere not until the cost is known", () => {
    const p = new ContinuationPolicy();
    expect(p.ask(4, true)).toBe(4);
    expect(p.ask(4, false)).toBe(0);
    expect(p.ask(0, true)).toBe(0);
  });

  it("elsewhere too when the continuation costs a small share of a call (a small LLM, a long round trip)", () => {
    const p = new ContinuationPolicy(0.05);
    // a 50 ms call whose 4-token continuation took the server 0.4 ms
    p.observe({ latencyMs: 50.4, draft: [1, 2, 3, 4], draftMs: 0.4 });
    expect(p.ask(4, false)).toBe(4);
  });

  it("not elsewhere when it is costly (a big LLM on a near server), and it follows changes", () => {
    const p = new ContinuationPolicy(0.05);
    p.observe({ latencyMs: 130, draft: [1, 2, 3, 4], draftMs: 60 }); // 15 ms a token against a 70 ms call
    expect(p.ask(4, false)).toBe(0);
    expect(p.ask(4, true)).toBe(4);
    // the server got fast (another engine, less load): the estimate moves towards it
    for (let i = 0; i < 20; i++) p.observe({ latencyMs: 70.2, draft: [1, 2, 3, 4], draftMs: 0.2 });
    expect(p.ask(4, false)).toBe(4);
  });

  it("a peer that reports no cost gets continuations inside clusters only", () => {
    const p = new ContinuationPolicy();
    for (let i = 0; i < 5; i++) p.observe({ latencyMs: 40, draft: [1, 2] });
    expect(p.ask(4, false)).toBe(0);
    expect(p.ask(4, true)).toBe(4);
  });
});

describe("GuessPolicy: asking ahead on the SLM's guessed text", () => {
  it("starts sceptical, starts once the cloud confirms a guess, stops when it keeps overruling them", () => {
    const p = new GuessPolicy(0.3, 8);
    expect(p.agreement).toBeCloseTo(0.25);
    expect(p.pipeline).toBe(false);
    p.observe(true);
    expect(p.agreement).toBeCloseTo(1.5 / 3);
    expect(p.pipeline).toBe(true);
    for (let i = 0; i < 3; i++) p.observe(false);
    expect(p.agreement).toBeCloseTo(1.5 / 6);
    expect(p.pipeline).toBe(false);
    for (let i = 0; i < 8; i++) p.observe(i % 2 === 0);
    expect(p.agreement).toBeCloseTo(4.5 / 10); // only the last 8 count
    expect(p.pipeline).toBe(true);
  });
});
