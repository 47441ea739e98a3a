import { describe, expect, it } from "vitest";
import type { BridgeEvent, Conversation, StoredMessage } from "../../shared/bridge.js";
import type { TokenEvent } from "../../shared/events.js";
import { chatReducer, initialChatState, selectActiveConversation, type ChatState } from "../../renderer/state/chatReducer.js";

const tok = (index: number, text: string, origin: TokenEvent["origin"] = "local"): TokenEvent => ({
  index,
  tokenId: 100 + index,
  text,
  origin,
  confidence: 0.4,
  tau: 0.5,
  cloudLatencyMs: origin === "local" ? null : 3,
  slmTokenId: 100 + index,
});
const user = (id: string, content: string): StoredMessage => ({ id, role: "user", content, createdAt: 1 });
const conv = (messages: StoredMessage[] = []): Conversation => ({ id: "c1", title: "t", createdAt: 1, updatedAt: 1, messages });
const handle = (userMessageId: string) => ({ requestId: "r1", conversationId: "c1", messageId: "a1", userMessageId });
const ev = (s: ChatState, event: BridgeEvent) => chatReducer(s, { type: "bridge", event });

function loaded(c = conv()): ChatState {
  return chatReducer(chatReducer(initialChatState, { type: "loaded", conversation: c }), { type: "select", id: "c1" });
}

describe("chat reducer: streaming an answer", () => {
  it("appends the user message and an empty answer, then token deltas in order", () => {
    let s = ev(loaded(), { type: "answer-start", handle: handle("u1"), tau: 0.5, user: user("u1", "hi") });
    expect(s.streaming).toEqual({ requestId: "r1", conversationId: "c1", messageId: "a1" });
    expect(selectActiveConversation(s)!.messages.map((m) => m.id)).toEqual(["u1", "a1"]);
    s = ev(s, {
      type: "answer-delta",
      requestId: "r1",
      conversationId: "c1",
      messageId: "a1",
      tokens: [tok(0, "Once"), tok(1, " upon", "cloud")],
    });
    s = ev(s, { type: "answer-delta", requestId: "r1", conversationId: "c1", messageId: "a1", tokens: [tok(2, " a", "fallback")] });
    const a = selectActiveConversation(s)!.messages[1];
    expect(a.content).toBe("Once upon a");
    expect(a.tokens!.map((t) => t.origin)).toEqual(["local", "cloud", "fallback"]);
  });

  it("an edit's answer-start makes the new branch the path from `at` (the old branch is a version of the new message)", () => {
    const a0: StoredMessage = { id: "a0", role: "assistant", content: "old", createdAt: 1 };
    const s0 = loaded(conv([user("u0", "first"), a0, user("u1", "hi"), { ...a0, id: "a2" }]));
    const edited: StoredMessage = { ...user("u1b", "hello"), versions: [[user("u1", "hi"), { ...a0, id: "a2" }]], version: 1 };
    const answer: StoredMessage = { id: "a1", role: "assistant", content: "", createdAt: 2, tokens: [] };
    const s = ev(s0, { type: "answer-start", handle: handle("u1b"), tau: 0.5, user: edited, at: 2, answer });
    const messages = selectActiveConversation(s)!.messages;
    expect(messages.map((m) => m.id)).toEqual(["u0", "a0", "u1b", "a1"]);
    expect(messages[2].versions![0].map((m) => m.id)).toEqual(["u1", "a2"]);
  });

  it("is pure: the previous state and untouched messages keep their identity", () => {
    const first = user("u0", "earlier");
    const s0 = ev(loaded(conv([first])), { type: "answer-start", handle: handle("u1"), tau: 0.5, user: user("u1", "hi") });
    const snapshot = JSON.stringify(s0);
    const s1 = ev(s0, { type: "answer-delta", requestId: "r1", conversationId: "c1", messageId: "a1", tokens: [tok(0, "x")] });
    expect(JSON.stringify(s0)).toBe(snapshot);
    expect(s1).not.toBe(s0);
    expect(selectActiveConversation(s1)!.messages[0]).toBe(first); // memoised rows do not re-render
  });

  it("the end replaces the streamed message with the stored one and clears streaming", () => {
    let s = ev(loaded(), { type: "answer-start", handle: handle("u1"), tau: 0.5, user: user("u1", "hi") });
    const final: StoredMessage = {
      id: "a1",
      role: "assistant",
      content: "Done.",
      createdAt: 2,
      tokens: [tok(0, "Done.")],
      status: "stopped",
    };
    s = ev(s, { type: "answer-end", requestId: "r1", conversationId: "c1", message: final });
    expect(s.streaming).toBeNull();
    expect(selectActiveConversation(s)!.messages[1]).toEqual(final);
  });

  it("edit: replaces the user message and drops everything after it", () => {
    const c = conv([user("u1", "one"), { id: "a0", role: "assistant", content: "x", createdAt: 1 }, user("u2", "two")]);
    const s = ev(loaded(c), { type: "answer-start", handle: handle("u1"), tau: 0.5, user: user("u1", "one, edited") });
    expect(selectActiveConversation(s)!.messages.map((m) => [m.id, m.content])).toEqual([
      ["u1", "one, edited"],
      ["a1", ""],
    ]);
  });

  it("an error ends streaming and is recorded on the message", () => {
    let s = ev(loaded(), { type: "answer-start", handle: handle("u1"), tau: 0.5, user: user("u1", "hi") });
    s = ev(s, { type: "answer-error", requestId: "r1", conversationId: "c1", messageId: "a1", error: "boom" });
    expect(s.streaming).toBeNull();
    expect(s.lastError).toBe("boom");
    expect(selectActiveConversation(s)!.messages[1].status).toBe("error");
  });

  it("ignores deltas for a conversation that is not loaded, and a deleted active conversation unselects", () => {
    const s = ev(initialChatState, { type: "answer-delta", requestId: "r", conversationId: "zz", messageId: "m", tokens: [tok(0, "x")] });
    expect(s).toBe(initialChatState);
    const r = chatReducer(loaded(), { type: "removed", id: "c1" });
    expect(r.activeId).toBeNull();
    expect(r.loaded.c1).toBeUndefined();
  });
});
