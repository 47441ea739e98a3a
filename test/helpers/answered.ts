/** Waiting for an answer of the engine service to end (engine tests over TandemService). */
import type { BridgeEvent } from "../../shared/bridge.js";
import type { TandemService } from "../../electron/engine/service.js";

/** Resolves with the `answer-end` or `answer-error` event of `requestId`; subscribe before sending. */
export function answered(service: TandemService, requestId: string): Promise<BridgeEvent> {
  return new Promise((resolve) => {
    const off = service.subscribe((e) => {
      if ((e.type === "answer-end" || e.type === "answer-error") && e.requestId === requestId) {
        off();
        resolve(e);
      }
    });
  });
}
