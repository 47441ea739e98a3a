/**
 * One /next request: the delta after what the server holds and the LLM's token there (with its
 * continuation, when asked for), re-sent after a lost session or an out_of_sync refusal.
 */
import { nextResponseSchema, type NextRequestBody, type NextResponse } from "../../../shared/protocol.js";
import { compactSampling, type SamplingSettings } from "../../../shared/sampling.js";
import { expectLength, type CloudHttp } from "./cloudHttp.js";
import type { SessionMirror } from "./sessionMirror.js";

export class NextCaller {
  constructor(
    private readonly mirror: SessionMirror,
    private readonly http: CloudHttp,
    /** top-k alternatives to ask for, and whether to ask for the token's log-probability (TandemClientOptions) */
    private readonly topK: number,
    private readonly logprob: boolean,
  ) {}

  /** Applies the delta and predicts; re-creates a lost session and re-syncs (up to three times). */
  async next(
    history: readonly number[],
    signal: AbortSignal,
    draft: number,
    sampling: SamplingSettings | undefined,
  ): Promise<NextResponse> {
    for (let attempt = 0; ; attempt++) {
      const session = this.mirror.sessionId;
      try {
        return await this.send(history, signal, attempt === 0, draft, sampling);
      } catch (err) {
        if (attempt >= 3 || !(await this.mirror.resync(err, signal, session))) throw err;
      }
    }
  }

  private async send(
    history: readonly number[],
    signal: AbortSignal,
    optimistic: boolean,
    draft: number,
    sampling: SamplingSettings | undefined,
  ): Promise<NextResponse> {
    const m = this.mirror;
    const base = await m.deltaBase(history, signal, optimistic);
    const body: NextRequestBody = {
      ...m.delta(history, base, history.slice(base)),
      topK: this.topK,
      ...(draft > 0 ? { draft } : {}),
      // with every call, not once per answer: calls may overtake each other, and sessions be re-made (docs/sampling.md)
      ...(sampling ? { sampling: compactSampling(sampling) } : {}),
      ...(this.logprob ? {} : { logprob: false }),
    };
    const epoch = m.sending(base, true);
    const r = await this.http.call(m.path("next"), body, signal, nextResponseSchema(m.device!.vocabSize, draft), "next-token reply");
    const continuation = r.draft ?? [];
    // with a continuation the server also evaluated the predicted token and all but its last token
    const held = continuation.length > 0 ? [...history, r.tokenId, ...continuation.slice(0, -1)] : history.slice();
    expectLength(r.length, held.length);
    // a request sent after this one may already have changed what the server holds: then only the
    // common prefix, set when that one went out, is certain
    m.confirm(epoch, held);
    return continuation.length > 0 ? { ...r, draft: continuation } : { ...r, draft: undefined };
  }
}
