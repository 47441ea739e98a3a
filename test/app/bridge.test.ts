/** The bridge's function table: one definition, complete at run time, and call validation. */
import { describe, expect, expectTypeOf, it } from "vitest";
import {
  BRIDGE_OPS,
  BRIDGE_OPS_COMPLETE,
  isBridgeOp,
  parseWireRequest,
  type BridgeApi,
  type BridgeOp,
  type OpArg,
  type OpResult,
} from "../../shared/bridge.js";
import { bindService, TandemService } from "../../electron/engine/service.js";

describe("bridge types", () => {
  it("the run-time list is the type's list, without duplicates", () => {
    expect(BRIDGE_OPS_COMPLETE).toBe(true);
    expect(new Set(BRIDGE_OPS).size).toBe(BRIDGE_OPS.length);
    expectTypeOf<(typeof BRIDGE_OPS)[number]>().toEqualTypeOf<BridgeOp>();
  });

  it("the service implements exactly the table", () => {
    expectTypeOf<TandemService>().toMatchTypeOf<BridgeApi>();
    // bindService builds the dispatch table: every operation, nothing else
    const bound = bindService({} as TandemService);
    expect(Object.keys(bound).sort()).toEqual([...BRIDGE_OPS].sort());
  });

  it("operations are typed end to end", () => {
    expectTypeOf<OpArg<"setTau">>().toEqualTypeOf<{ tau: number }>();
    expectTypeOf<OpResult<"send">>().toHaveProperty("requestId");
    expectTypeOf<OpArg<"stop">>().toEqualTypeOf<{ requestId: string }>();
    expectTypeOf<OpArg<"exportConversation">["format"]>().toEqualTypeOf<"markdown" | "json">();
  });

  it("a wire call is validated before dispatch", () => {
    expect(parseWireRequest(JSON.stringify({ kind: "call", id: 1, op: "setTau", arg: { tau: 0.2 } }))).toEqual({
      kind: "call",
      id: 1,
      op: "setTau",
      arg: { tau: 0.2 },
    });
    for (const bad of [
      "not json",
      JSON.stringify({ kind: "call", id: 1, op: "constructor", arg: {} }),
      JSON.stringify({ kind: "call", id: 1, op: "__proto__", arg: {} }),
      JSON.stringify({ kind: "call", id: "1", op: "stats", arg: {} }),
      JSON.stringify({ kind: "call", id: 1, op: "stats", arg: null }),
      JSON.stringify({ kind: "call", id: 1, op: "stats", arg: [] }),
      JSON.stringify({ kind: "event", id: 1, op: "stats", arg: {} }),
    ]) {
      expect(parseWireRequest(bad), bad).toBeNull();
    }
    expect(isBridgeOp("toString")).toBe(false);
  });
});
