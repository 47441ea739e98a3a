/**
 * The reference decoder: what every answer is, token for token, however the network is hidden.
 *
 *   at each position: the SLM's step → the router decides (shared/routing.ts)
 *     kept   → the SLM's token (greedy, or drawn: shared/sampling.ts)   origin "local"
 *     routed → wait for the cloud's token after exactly this history    origin "cloud"
 *              (or the SLM's own, should that call fail)                  origin "fallback"
 *   → commit the token (the SLM reads it) → next position
 *
 * It blocks on every call. The collaborative decoder (decoder.ts) produces the same tokens and origins
 * sooner; the identity tests (test/engine/networkHiding.test.ts, replicaHiding.test.ts) compare each of
 * its ways of hiding the network with this one. `continuation` > 0 asks calls for the LLM's next
 * tokens as the faster decoder does, and takes one where the text since that call is the
 * continuation's own — the LLM's token after this very history, which a call would return.
 *
 * Sampling: a token is drawn with the number keyed by (seed, its position in the context), by the
 * SLM and the cloud alike, so it depends on the history alone and every faster client draws the same.
 */
import type { StopReason, TokenEvent } from "../../../shared/events.js";
import type { Router } from "../../../shared/router.js";
import { decideStep } from "../../../shared/routing.js";
import type { SamplingSettings } from "../../../shared/sampling.js";
import type { LocalModel } from "../../../inference/localModel.js";
import type { CloudPeer } from "../cloud/peer.js";
import { TokenTextStream } from "../textStream.js";
import { callCloud } from "./callSource.js";
import { localEvent, routedEvent, type RoutedResult } from "./routed.js";

export interface ReferenceOptions {
  tau: number;
  maxTokens: number;
  stop?: readonly string[];
  signal?: AbortSignal;
  /** most tokens of the LLM's continuation a call asks for (when `ContinuationPolicy` says so); default 0 */
  continuation?: number;
  /** how tokens are chosen; absent: greedy */
  sampling?: SamplingSettings;
}

export async function* referenceDecode(
  slm: LocalModel,
  router: Router,
  cloud: CloudPeer | null,
  prompt: readonly number[],
  opts: ReferenceOptions,
): AsyncGenerator<TokenEvent, StopReason> {
  const history = [...prompt];
  const text = new TokenTextStream((t, last) => slm.detokenize(t, last), opts.stop ?? []);
  const cloudToken = blockingCloud(cloud, opts.continuation ?? 0, opts.sampling);
  const needs = { ...router.needs, sampling: opts.sampling };
  let last: TokenEvent | undefined;
  let previousRouted = false;
  try {
    let step = await slm.begin(prompt, needs);
    for (let index = 0; index < opts.maxTokens; index++) {
      if (opts.signal?.aborted) return "abort";
      const decision = decideStep(router, step, index, opts.tau);
      let event = localEvent(slm, step, decision, index);
      if (decision.toCloud) {
        const room = Math.min(opts.maxTokens - index - 1, slm.contextSize - history.length - 2);
        const result = await cloudToken(history, room, previousRouted, opts.signal);
        if (result.kind === "aborted") return "abort";
        event = routedEvent(event, result);
      }
      if (slm.isEndOfGeneration(event.tokenId)) return "eog";
      history.push(event.tokenId);
      const released = text.push(event.tokenId);
      event.text = released.text;
      previousRouted = decision.toCloud;
      yield (last = event);
      if (released.stopped) return "stop-string";
      if (index + 1 < opts.maxTokens && history.length >= slm.contextSize) return "context-full";
      step = await slm.advance(event.tokenId, needs);
    }
    return "max-tokens";
  } finally {
    if (last) last.text += text.flush().text; // text held back to the end belongs to the last token
  }
}

/** The cloud's token after `history`: from a call, or from the last call's continuation where the text since that call is the continuation's. */
function blockingCloud(cloud: CloudPeer | null, maxContinuation: number, sampling: SamplingSettings | undefined) {
  let known: { from: number; tokens: readonly number[] } | null = null;
  return async (
    history: readonly number[],
    room: number,
    previousRouted: boolean,
    signal: AbortSignal | undefined,
  ): Promise<RoutedResult> => {
    if (!cloud) return { kind: "fallback", reason: "no cloud configured", latencyMs: null };
    const j = known ? history.length - known.from : -1;
    if (known && j < known.tokens.length && known.tokens.slice(0, j).every((t, i) => history[known!.from + i] === t)) {
      const tokenId = known.tokens[j]!;
      return { kind: "cloud", tokenId, latencyMs: null, verdict: { tokenId, top: [], fromDraft: true }, continuation: [] };
    }
    const asked = cloud.learnt.continuations.ask(Math.min(maxContinuation, room), previousRouted);
    const result = await callCloud(cloud, history, signal, asked, sampling);
    known = result.kind === "cloud" && result.continuation.length > 0 ? { from: history.length + 1, tokens: result.continuation } : null;
    return result;
  };
}
