/**
 * Runs an answer under a target cloud share: the decoder reads τ from the steer before every position
 * (GenerateOptions.tau as a function) and the steer sees every position as it is decided. A wrapper
 * around the answer's stream, so the decoder itself knows nothing of shares.
 */
import type { TokenEvent } from "../../../shared/events.js";
import type { Answer } from "../decoder.js";
import type { ShareSteer } from "./shareCalibration.js";

/** The answer's events, each shown to `steer` (or any observer of positions) before it is passed on. */
export function steered(answer: Answer, steer: Pick<ShareSteer, "observe">): Answer {
  return {
    summary: answer.summary,
    [Symbol.asyncIterator]: () => {
      const it = answer[Symbol.asyncIterator]();
      return {
        next: async (): Promise<IteratorResult<TokenEvent>> => {
          const r = await it.next();
          if (!r.done) steer.observe(r.value);
          return r;
        },
        return: async () => it.return?.(undefined) ?? { done: true as const, value: undefined },
      };
    },
  };
}

/** What a summary says of a target share: the target and the share of positions routed to the cloud. */
export interface ShareReport {
  targetShare: number;
  /** positions the router sent to the cloud / positions (whatever then answered them) */
  routedShare: number;
}

export function shareReport(steer: ShareSteer): ShareReport {
  return { targetShare: steer.target, routedShare: steer.realised.share };
}
