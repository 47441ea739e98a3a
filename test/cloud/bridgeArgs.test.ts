/**
 * Bridge arguments are validated per operation in one place (callOp, used by the IPC handler and the
 * WebSocket bridge) before the service runs: a malformed argument is refused with a clear error and
 * the operation is never called.
 */
import { describe, expect, it } from "vitest";
import { BRIDGE_OPS, BridgeArgumentError, callOp, type BridgeApi } from "../../shared/bridge.js";

function recordingApi(): { api: BridgeApi; calls: [string, unknown][] } {
  const calls: [string, unknown][] = [];
  const api = Object.fromEntries(
    BRIDGE_OPS.map((op) => [op, async (arg: unknown) => (calls.push([op, arg]), { ok: true })]),
  ) as unknown as BridgeApi;
  return { api, calls };
}

describe("bridge arguments", () => {
  it.each<[string, unknown]>([
    ["send", { requestId: "r", conversationId: "c", text: 5 }],
    ["send", { requestId: "r", conversationId: "c" }],
    ["send", { requestId: "", conversationId: "c", text: "hi" }],
    ["send", { requestId: "r", conversationId: { toString: "x" }, text: "hi" }],
    ["setTau", { tau: "0.5" }],
    ["setTau", { tau: 2 }],
    ["setTau", { tau: null }],
    ["editAndResend", { requestId: "r", conversationId: "c", messageId: ["m"], text: "t" }],
    ["getConversation", { id: "x".repeat(201) }],
    ["exportConversation", { id: "c", format: "pdf" }],
    ["renameConversation", { id: "c", title: 7 }],
    ["openLocalModel", { path: "" }],
    ["setCloudSettings", { kind: "vllm", url: "http://x", token: "" }],
    ["setCloudSettings", { kind: "tandem", url: 1, token: "" }],
    ["createConversation", { title: { a: 1 } }],
    ["snapshot", null],
    ["stop", []],
  ])("%s %j is refused before the service runs", async (op, arg) => {
    const { api, calls } = recordingApi();
    await expect(callOp(api, op as never, arg)).rejects.toBeInstanceOf(BridgeArgumentError);
    await expect(callOp(api, op as never, arg)).rejects.toThrow(new RegExp(`^Invalid ${op} call: `));
    expect(calls).toEqual([]);
  });

  it("well-formed arguments reach the service, unknown fields dropped", async () => {
    const { api, calls } = recordingApi();
    await callOp(api, "send", { requestId: "r", conversationId: "c", text: "hello", extra: { deep: true } });
    await callOp(api, "setTau", { tau: 0 });
    await callOp(api, "snapshot", {});
    await callOp(api, "createConversation", {});
    await callOp(api, "setCloudSettings", { kind: "none", url: "", token: "" });
    expect(calls).toEqual([
      ["send", { requestId: "r", conversationId: "c", text: "hello" }],
      ["setTau", { tau: 0 }],
      ["snapshot", {}],
      ["createConversation", {}],
      ["setCloudSettings", { kind: "none", url: "", token: "" }],
    ]);
  });
});
