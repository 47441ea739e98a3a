/**
 * The context policy, pure: a word is a token, each message costs 2 more (its template).
 */
import { describe, expect, it } from "vitest";
import type { ChatMessage } from "../../shared/chat.js";
import {
  answerReserve,
  ContextPolicyError,
  planContext,
  planSlideAhead,
  SLIDE_KEEP,
  type ContextPlanInput,
} from "../../electron/engine/contextWindow.js";

const words = (s: string) => (s.trim() ? s.trim().split(/\s+/).length : 0);
const measure = (ms: ChatMessage[]) => ms.reduce((n, m) => n + 2 + words(m.content), 0);
const keepEnd = (s: string, n: number) => s.trim().split(/\s+/).slice(-Math.max(0, n)).join(" ");
const text = (i: number, n: number) => Array.from({ length: n }, (_, k) => `w${i}_${k}`).join(" ");

function conversation(turns: number, len: number): ChatMessage[] {
  return Array.from({ length: turns }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: text(i, len) }) as ChatMessage);
}

const base = (turns: ChatMessage[], keepFrom = 0): ContextPlanInput => ({
  system: "be brief",
  turns,
  window: 200,
  reserve: 40,
  keepFrom,
  measure,
  keepEnd,
});

describe("context policy", () => {
  it("keeps everything while it fits", () => {
    const turns = conversation(5, 10);
    const p = planContext(base(turns));
    expect(p.messages).toEqual([{ role: "system", content: "be brief" }, ...turns]);
    expect(p.usage).toEqual({ used: measure(p.messages), window: 200, reserved: 40, droppedMessages: 0, slid: false, truncated: false });
  });

  it("drops the oldest whole turns, keeps the system prompt, slides to at most half the budget", () => {
    const turns = conversation(21, 10); // 21 × 12 + 4 = 256 > 160
    const p = planContext(base(turns));
    expect(p.messages[0]).toEqual({ role: "system", content: "be brief" });
    expect(p.messages.at(-1)).toEqual(turns.at(-1));
    expect(turns[p.keepFrom].role).toBe("user"); // a kept stretch starts at a user message
    expect(p.messages.slice(1)).toEqual(turns.slice(p.keepFrom)); // nothing cut in the middle
    expect(p.usage.used).toBeLessThanOrEqual(Math.floor(160 * SLIDE_KEEP));
    expect(p.usage).toMatchObject({ droppedMessages: p.keepFrom, slid: true, truncated: false });
    // the smallest such drop: one turn fewer would not fit the slide's target
    expect(measure([p.messages[0], ...turns.slice(p.keepFrom - 2)])).toBeGreaterThan(Math.floor(160 * SLIDE_KEEP));
  });

  it("is sticky between slides: prompts extend each other, and slides are turns apart", () => {
    let keepFrom = 0;
    let slides = 0;
    let previous: ChatMessage[] = [];
    const all = conversation(101, 10);
    for (let n = 1; n <= all.length; n += 2) {
      const p = planContext(base(all.slice(0, n), keepFrom));
      expect(p.usage.used).toBeLessThanOrEqual(160);
      if (p.usage.slid) slides++;
      else expect(p.messages.slice(0, previous.length)).toEqual(previous); // the KV cache's prefix holds
      keepFrom = p.keepFrom;
      previous = p.messages;
    }
    // 51 answers over ~5× the budget: a slide every few turns, not every turn
    expect(slides).toBeGreaterThanOrEqual(4);
    expect(slides).toBeLessThanOrEqual(12);
  });

  it("cuts only the newest message when it alone is longer than the budget, keeping its end", () => {
    const turns = [...conversation(4, 10), { role: "user", content: text(9, 500) } as ChatMessage];
    const p = planContext(base(turns));
    expect(p.usage).toMatchObject({ truncated: true, slid: true, droppedMessages: 4 });
    expect(p.messages).toHaveLength(2);
    const kept = p.messages[1].content;
    expect(text(9, 500).endsWith(kept)).toBe(true);
    expect(p.usage.used).toBeLessThanOrEqual(160);
    expect(p.usage.used).toBeGreaterThan(150);
  });

  it("a conversation cut short behind the remembered start (an edit) is planned afresh", () => {
    const p = planContext(base(conversation(3, 5), 10));
    expect(p.keepFrom).toBe(0);
    expect(p.messages.slice(1)).toEqual(conversation(3, 5));
    // a start inside the conversation that is not a user message moves to the next user message
    expect(planContext(base(conversation(5, 5), 1)).keepFrom).toBe(2);
  });

  it("a system prompt that leaves no room is a clear error", () => {
    expect(() => planContext({ ...base([{ role: "user", content: text(1, 300) }]), system: text(2, 150) })).toThrow(ContextPolicyError);
  });

  it("reserves the answer's max tokens, at most a quarter of the window", () => {
    expect(answerReserve(2048, 256)).toBe(256);
    expect(answerReserve(512, 256)).toBe(128);
  });
});

describe("a slide planned ahead, when an answer ends (idle pre-slide)", () => {
  const ahead = (turns: ChatMessage[], keepFrom = 0) => planSlideAhead(base(turns, keepFrom));
  const next = (i: number, len = 10): ChatMessage => ({ role: "user", content: text(i, len) });

  it("is not planned while the next prompt, with a message like the last, fits", () => {
    // 8 turns of 12 + 4 = 100; a 12-token message makes 112 <= 160
    expect(ahead(conversation(8, 10))).toBeNull();
    // the same history with a long last user message foresees a long next one
    const long = conversation(8, 10);
    long[6] = next(6, 60);
    expect(ahead(long)).not.toBeNull();
  });

  it("is planned when it would not fit: the smallest drop of whole turns leaving the message room in half the budget", () => {
    const turns = conversation(12, 11); // 12 × 13 + 4 = 160; a 13-token message more does not fit
    const a = ahead(turns)!;
    expect(a.turns).toBe(12);
    expect(turns[a.keepFrom].role).toBe("user");
    const target = Math.floor(160 * SLIDE_KEEP);
    const sys = { role: "system", content: "be brief" } as ChatMessage;
    expect(measure([sys, ...turns.slice(a.keepFrom)]) + 13).toBeLessThanOrEqual(target);
    expect(measure([sys, ...turns.slice(a.keepFrom - 2)]) + 13).toBeGreaterThan(target);
  });

  it("the next plan keeps from there, reports the slide, and is what a message of the foreseen length fits in", () => {
    const turns = conversation(12, 11);
    const preSlid = ahead(turns)!;
    const p = planContext({ ...base([...turns, next(12, 11)]), preSlid });
    expect(p.keepFrom).toBe(preSlid.keepFrom);
    expect(p.messages.slice(1)).toEqual([...turns.slice(preSlid.keepFrom), next(12, 11)]);
    expect(p.usage).toMatchObject({ slid: true, truncated: false, droppedMessages: preSlid.keepFrom });
    // a message longer than foreseen slides further, as without a plan ahead
    const long = planContext({ ...base([...turns, next(12, 120)]), preSlid });
    expect(long.keepFrom).toBeGreaterThan(preSlid.keepFrom);
    expect(long.usage.used).toBeLessThanOrEqual(160);
  });

  it("counts only for one new message after the turns it was planned for (not a regenerate or an edit)", () => {
    const turns = conversation(12, 11);
    const preSlid = ahead(turns)!;
    const regenerate = turns.slice(0, 11); // the answer set aside, the last user message answered again
    expect(planContext({ ...base(regenerate), preSlid })).toEqual(planContext(base(regenerate)));
    const edit = [...turns.slice(0, 8), next(8)];
    expect(planContext({ ...base(edit), preSlid })).toEqual(planContext(base(edit)));
  });

  it("over a long conversation of like messages, every slide is planned ahead and prompts extend each other between slides", () => {
    let keepFrom = 0;
    let preSlid: ReturnType<typeof planSlideAhead> = null;
    let slides = 0;
    let previous: ChatMessage[] = [];
    const all = conversation(101, 10);
    for (let n = 1; n <= all.length; n += 2) {
      const p = planContext({ ...base(all.slice(0, n), keepFrom), preSlid: preSlid ?? undefined });
      expect(p.usage.used).toBeLessThanOrEqual(160);
      // the plan slides exactly where a slide was planned ahead (the message was as long as foreseen)
      expect(p.usage.slid).toBe(preSlid != null);
      if (p.usage.slid) {
        slides++;
        expect(p.keepFrom).toBe(preSlid!.keepFrom);
      } else expect(p.messages.slice(0, previous.length)).toEqual(previous);
      keepFrom = p.keepFrom;
      previous = p.messages;
      preSlid = planSlideAhead(base(all.slice(0, n + 1), keepFrom));
    }
    expect(slides).toBeGreaterThanOrEqual(4);
    expect(slides).toBeLessThanOrEqual(12);
  });
});
