/** The stores and the controller against a scripted bridge (the real one is covered by test/app and e2e). */
import { describe, expect, it } from "vitest";
import type { Bridge, BridgeEvent, BridgeListener, BridgeOps, Conversation } from "../../shared/bridge.js";
import { BRIDGE_OPS } from "../../shared/bridge.js";
import { createController } from "../../renderer/state/controller.js";
import { createStores, selectInspected } from "../../renderer/state/stores.js";

function fakeBridge(overrides: Partial<{ [K in keyof BridgeOps]: (a: BridgeOps[K][0]) => Promise<BridgeOps[K][1]> }>) {
  const listeners = new Set<BridgeListener>();
  const calls: [string, unknown][] = [];
  const table = Object.fromEntries(
    BRIDGE_OPS.map((op) => [
      op,
      async (a: unknown) => {
        calls.push([op, a]);
        const f = (overrides as Record<string, (a: unknown) => Promise<unknown>>)[op];
        if (!f) throw new Error(`unexpected call ${op}`);
        return f(a);
      },
    ]),
  );
  const bridge = { ...table, subscribe: (l: BridgeListener) => (listeners.add(l), () => listeners.delete(l)) } as unknown as Bridge;
  return { bridge, calls, push: (e: BridgeEvent) => listeners.forEach((l) => l(e)), listeners };
}

const conv: Conversation = { id: "c1", title: "Hello", createdAt: 1, updatedAt: 1, messages: [] };
const stage = { source: null, name: null, loaded: false, error: null, progress: null };
const snapshot = {
  tau: 0.3,
  conversations: [{ id: "c1", title: "Hello", createdAt: 1, updatedAt: 1, messageCount: 0 }],
  models: { slm: stage, llm: stage, router: "r", download: null },
  cloud: { kind: "none" as const, url: "", hasToken: false, state: "disabled" as const, detail: null, model: null },
  stats: { active: null, totals: { answers: 0, tokens: 0, cloudTokens: 0, fallbackTokens: 0, cloudCalls: 0, bytesUp: 0, bytesDown: 0 } },
  notices: [],
  activeRequest: null,
};

describe("controller + stores", () => {
  it("sync reads the snapshot, opens the newest conversation and routes events to the right store", async () => {
    const stores = createStores();
    const f = fakeBridge({ snapshot: async () => snapshot, getConversation: async () => conv });
    const ctl = createController(f.bridge, stores);
    await ctl.sync();
    expect(stores.session.getState()).toMatchObject({ connected: true, tau: 0.3 });
    expect(stores.chat.getState().activeId).toBe("c1");
    f.push({ type: "tau", tau: 0.7 });
    f.push({ type: "cloud", cloud: { ...snapshot.cloud, state: "offline", detail: "down" } });
    expect(stores.session.getState().tau).toBe(0.7);
    expect(stores.session.getState().cloud?.state).toBe("offline");
    ctl.dispose();
    expect(f.listeners.size).toBe(0);
  });

  it("New chat reuses an empty conversation and focuses the message box; it creates one only when none is empty", async () => {
    const stores = createStores();
    const full = { ...conv, id: "c2", messages: [{ id: "u", role: "user" as const, content: "hi", createdAt: 1 }] };
    const metas = [
      { ...snapshot.conversations[0], id: "c2", messageCount: 1 },
      { ...snapshot.conversations[0], id: "c1", messageCount: 0 },
    ];
    const f = fakeBridge({
      snapshot: async () => ({ ...snapshot, conversations: metas }),
      getConversation: async (a) => (a.id === "c1" ? conv : full),
      createConversation: async () => ({ ...conv, id: "c3" }),
    });
    const ctl = createController(f.bridge, stores);
    await ctl.sync();
    expect(stores.chat.getState().activeId).toBe("c2");
    await ctl.newChat();
    expect(stores.chat.getState().activeId).toBe("c1");
    expect(stores.ui.getState().composerFocus).toBe(1);
    expect(f.calls.some(([op]) => op === "createConversation")).toBe(false);
    f.push({ type: "conversations", conversations: metas.map((m) => ({ ...m, messageCount: 2 })) });
    await ctl.newChat();
    expect(stores.chat.getState().activeId).toBe("c3");
    expect(stores.ui.getState().composerFocus).toBe(2);
  });

  it("send carries a fresh request id; stop aborts that request; no second send while streaming", async () => {
    const stores = createStores();
    const f = fakeBridge({
      snapshot: async () => snapshot,
      getConversation: async () => conv,
      send: async (a) => ({ requestId: a.requestId, conversationId: a.conversationId, messageId: "a1", userMessageId: "u1" }),
      stop: async () => ({ stopped: true }),
    });
    const ctl = createController(f.bridge, stores);
    await ctl.sync();
    await ctl.send("hi");
    const sent = f.calls.find(([op]) => op === "send")![1] as { requestId: string; text: string };
    expect(sent.text).toBe("hi");
    f.push({
      type: "answer-start",
      handle: { requestId: sent.requestId, conversationId: "c1", messageId: "a1", userMessageId: "u1" },
      tau: 0.3,
      user: { id: "u1", role: "user", content: "hi", createdAt: 1 },
    });
    await ctl.send("again");
    expect(f.calls.filter(([op]) => op === "send")).toHaveLength(1);
    await ctl.stop();
    expect(f.calls.find(([op]) => op === "stop")![1]).toEqual({ requestId: sent.requestId });
  });

  it("a failing call becomes a visible error, not an unhandled rejection", async () => {
    const stores = createStores();
    const errors: string[] = [];
    const f = fakeBridge({
      snapshot: async () => snapshot,
      getConversation: async () => conv,
      setTau: async () => {
        throw new Error("τ must be in [0, 1]");
      },
    });
    const ctl = createController(f.bridge, stores, (m) => errors.push(m));
    await ctl.setTau(3);
    expect(errors).toEqual(["τ must be in [0, 1]"]);
  });

  it("the inspector shows the hovered token over the pinned one", () => {
    const { ui } = createStores();
    ui.setState({ pinned: { messageId: "a", index: 1 } });
    expect(selectInspected(ui.getState())).toEqual({ messageId: "a", index: 1 });
    ui.setState({ hovered: { messageId: "a", index: 4 } });
    expect(selectInspected(ui.getState())).toEqual({ messageId: "a", index: 4 });
  });
});
