/**
 * The predictor of the cloud server: what runs on a session once the pool has queued it — the delta
 * applied, the LLM's next token (greedy, with its log-probability and top-k when asked, or drawn with
 * the answer's sampling settings), a continuation drawn the same way (NextRequest.draft), and the
 * routed decoding continued with the SLM replica (/route).
 *
 * Sampling: each token is drawn by inference/sampling.ts, the code path the device's SLM uses, at its
 * position with the number keyed by (seed, position) and the penalties over the session's history: a
 * token depends on the history alone, so a continuation's token is what a call there would return.
 */
import type { Token } from "node-llama-cpp";
import type { AppendResponse, NextResponse, RouteEnd, RouteLine, TokenLogprob } from "../shared/protocol.js";
import type { SamplingSettings } from "../shared/sampling.js";
import { drawToken, needsProbabilities, samplePath, samplerOptions, type SamplePath } from "../inference/sampling.js";
import { CloudError } from "./errors.js";
import type { ReplicaRun } from "./replica.js";
import type { SessionPool } from "./sessionPool.js";
import { ContextShiftRefused, type Session } from "./sessionTypes.js";

/** ln of the smallest positive double: stands in for ln(0), which JSON cannot carry (-Infinity → null). */
const LOG_FLOOR = Math.log(Number.MIN_VALUE);

/**
 * How the LLM evaluates a sampled position: from the settings alone (never from what the reply
 * carries), so a call, a continuation and a /route stream draw from the same candidates.
 */
const llmPath = (sampling: SamplingSettings | undefined): SamplePath => samplePath(sampling, { top1Prob: false, topK: 0 });

/** What a route request carries besides the delta. */
interface RouteAsk {
  base: number;
  tokens: readonly number[];
  prefix?: string;
  max: number;
  position: number;
  sampling?: SamplingSettings;
}

export class Predictor {
  constructor(private readonly pool: SessionPool) {}

  private get counters() {
    return this.pool.counters;
  }

  private get capacity(): number {
    return this.pool.capacity;
  }

  private get context() {
    return this.pool.context;
  }

  /** Applies the delta: tokens[base..] of the client's history. */
  append(id: string, base: number, tokens: readonly number[], prefix?: string): Promise<AppendResponse> {
    return this.pool.enqueue(id, async (s) => {
      this.pool.checkDelta(s, base, tokens, prefix);
      await this.pool.rollback(s, base);
      await this.evaluate(s, tokens);
      return { length: s.sequence.nextTokenIndex, evaluated: tokens.length };
    });
  }

  /**
   * Applies the delta, predicts the LLM's token after it, then continues the device's routed decoding
   * with the replica (RouteRequest): `emit` gets each position as soon as it is decided. `follow` starts
   * the replica at a history (null: no slot free). Ends after `max` positions, an end-of-generation
   * token, a full session, when `signal` aborts (the client left) or at once when another request for
   * the session is waiting (the device's tokens have left the replica's: that request truncates them).
   */
  route(
    id: string,
    req: RouteAsk,
    follow: (session: string, history: readonly number[]) => Promise<ReplicaRun | null>,
    emit: (line: RouteLine) => void,
    signal: AbortSignal,
  ): Promise<{ end: RouteEnd; length: number }> {
    return this.pool.enqueue(id, async (s) => {
      const { delta, keep } = this.predictionDelta(s, req.base, req.tokens, req.prefix);
      await this.pool.rollback(s, keep);
      const history: number[] = [...s.sequence.contextTokens, ...delta];
      // the replica reads the history while the LLM predicts: they are separate contexts, and the
      // replica's prompt read would otherwise delay every position after the first
      const following = req.max > 1 ? follow(s.id, history) : Promise.resolve(null);
      following.catch(noop); // awaited below; a failure here must not count as unhandled meanwhile
      let first: number;
      try {
        first = (await this.predict(s, delta, { topK: 0, logprob: false, sampling: req.sampling })).tokenId;
      } catch (err) {
        void following.then((run) => run?.release(), noop);
        throw err;
      }
      this.counters.predictions++;
      this.counters.routeStreams++;
      this.counters.routePositions++;
      emit({ tokenId: first, routed: true });
      const run = await following;
      if (!run) return { end: req.max > 1 ? "replica-busy" : "max", length: s.sequence.nextTokenIndex };
      try {
        const end = await this.continueRouted(s, [...history, first], run, req, emit, signal);
        return { end, length: s.sequence.nextTokenIndex };
      } finally {
        run.release();
      }
    });
  }

  /** The positions after `history` (whose last token is the LLM's first), decided by the replica `run` (positioned before it). */
  private async continueRouted(
    s: Session,
    history: number[],
    run: ReplicaRun,
    req: RouteAsk,
    emit: (line: RouteLine) => void,
    signal: AbortSignal,
  ): Promise<RouteEnd> {
    const first = history[history.length - 1]!;
    if (this.context.model.isEogToken(first as Token)) return "eog";
    await run.advance(first);
    // tokens the LLM has not read yet: it reads them in one batch at the next routed position
    const pending = [first];
    for (let k = 1; k < req.max; k++) {
      if (signal.aborted || s.pending > 1 || s.closed) return "preempted";
      if (history.length >= Math.min(this.capacity, run.capacity)) return "full";
      const d = run.decide(req.position + k);
      let token = d.tokenId;
      if (d.routes) {
        token = (await this.predict(s, pending, { topK: 0, logprob: false, sampling: req.sampling })).tokenId;
        pending.length = 0;
        this.counters.routeRouted++;
      }
      this.counters.routePositions++;
      emit({ tokenId: token, routed: d.routes });
      pending.push(token);
      history.push(token);
      if (this.context.model.isEogToken(token as Token)) return "eog";
      await run.advance(token);
    }
    return "max";
  }

  /**
   * Applies the delta and predicts the token after the session's history (greedily, or drawn with
   * `sampling`); with `draft`, goes on predicting that many more tokens (the verified continuation:
   * NextRequest.draft).
   */
  next(
    id: string,
    base: number,
    tokens: readonly number[],
    topK: number,
    draft = 0,
    prefix?: string,
    logprob = true,
    sampling?: SamplingSettings,
  ): Promise<NextResponse> {
    return this.pool.enqueue(id, async (s) => {
      const { delta, keep } = this.predictionDelta(s, base, tokens, prefix);
      await this.pool.rollback(s, keep);
      const prediction = await this.predict(s, delta, { topK: logprob ? topK : 0, logprob, sampling });
      this.counters.predictions++;
      const t0 = performance.now();
      const continuation = draft > 0 ? await this.continueFrom(s, prediction.tokenId, draft, sampling) : undefined;
      return {
        length: s.sequence.nextTokenIndex,
        evaluated: delta.length + (continuation?.length ?? 0),
        ...prediction,
        ...(continuation ? { draft: continuation, draftMs: +(performance.now() - t0).toFixed(3) } : {}),
      };
    });
  }

  /** The tokens to evaluate for a prediction after `tokens[base..]`, and how many held tokens to keep. */
  private predictionDelta(
    s: Session,
    base: number,
    tokens: readonly number[],
    prefix?: string,
  ): { delta: readonly number[]; keep: number } {
    this.pool.checkDelta(s, base, tokens, prefix);
    if (tokens.length > 0) return { delta: tokens, keep: base };
    // the logits of the last held token are gone (only the most recent decode keeps any, and it
    // may not have asked for them): drop that token and evaluate it again to predict from it
    if (base === 0) throw new CloudError("bad_request", "Nothing to predict from: the session holds no tokens and the delta is empty");
    this.counters.rePredictions++;
    return { delta: [s.sequence.contextTokens[base - 1]!], keep: base - 1 };
  }

  /**
   * The LLM's continuation after `token`: up to `n` tokens, each drawn at its position as a call there
   * would (greedy without `sampling`), one decode each (batched with other sessions' work like any
   * evaluation), stopping after an end-of-generation token or where the session is full. Leaves
   * `token` and all continuation tokens but the last evaluated.
   */
  private async continueFrom(s: Session, token: number, n: number, sampling: SamplingSettings | undefined): Promise<number[]> {
    const out: number[] = [];
    // each step evaluates one more token; a sequence holds at most `capacity` tokens
    const room = Math.min(n, this.capacity - s.sequence.nextTokenIndex);
    if (room <= 0) return out;
    const path = llmPath(sampling);
    const history: number[] = [...s.sequence.contextTokens, token];
    // node-llama-cpp's own loop: one sampler for the whole continuation, and no confidence, which
    // would sort the whole vocabulary (NextResponse.draft); our draw goes back into it with next()
    const gen = s.sequence.evaluateWithMetadata(
      [token as Token],
      { probabilities: needsProbabilities(path) },
      { ...samplerOptions(sampling, path, () => history), yieldEogToken: true },
    );
    try {
      for (let r = await gen.next(); !r.done; r = await gen.next(out[out.length - 1] as Token)) {
        const next = drawToken(r.value, sampling, path, history.length).tokenId;
        this.counters.tokensEvaluated++;
        this.counters.draftTokens++;
        out.push(next);
        history.push(next);
        if (out.length >= room || this.context.model.isEogToken(next as Token)) break;
      }
    } catch (err) {
      throw overflow(err, this.capacity);
    } finally {
      await gen.return(undefined);
    }
    return out;
  }

  /** Evaluates `tokens` after the session's history, predicting nothing (background sync). */
  private async evaluate(s: Session, tokens: readonly number[]): Promise<void> {
    try {
      if (tokens.length > 0) await s.sequence.evaluateWithoutGeneratingNewTokens(asTokens(tokens));
      this.counters.tokensEvaluated += tokens.length;
    } catch (err) {
      throw overflow(err, this.capacity);
    }
  }

  /**
   * Evaluates `tokens` (at least one) after the session's history and predicts the token after them:
   * greedy (with its log-probability and top-k when `logprob`), or drawn with `sampling` (with the
   * drawn token's log-probability in the distribution it was drawn from when `logprob`; no top-k).
   */
  private async predict(
    s: Session,
    tokens: readonly number[],
    ask: { topK: number; logprob: boolean; sampling?: SamplingSettings },
  ): Promise<Omit<NextResponse, keyof AppendResponse>> {
    const path = llmPath(ask.sampling);
    const history = [...s.sequence.contextTokens, ...tokens];
    const greedy = path === "greedy";
    try {
      const ids = asTokens(tokens);
      const results = await s.sequence.controlledEvaluate([
        ...ids.slice(0, -1),
        // greedy: temperature 0, and the probabilities are the full softmax, not renormalised over a
        // truncated candidate set (docs/FACTS.md); the log-probability (`confidence`) sorts the whole
        // vocabulary: only when asked (NextRequest.logprob)
        [
          ids[ids.length - 1]!,
          {
            generateNext: {
              token: true,
              confidence: greedy && ask.logprob,
              probabilities: (greedy && ask.logprob && ask.topK > 0) || needsProbabilities(path),
              options: samplerOptions(ask.sampling, path, () => history),
            },
          },
        ],
      ]);
      this.counters.tokensEvaluated += tokens.length;
      const next = results[tokens.length - 1]?.next;
      if (next?.token == null || (greedy && ask.logprob && next.confidence === undefined)) throw new Error("node-llama-cpp returned no next token");
      if (!greedy) return drawnPrediction(drawToken({ token: next.token, probabilities: next.probabilities }, ask.sampling, path, history.length), ask.logprob);
      if (!ask.logprob) return { tokenId: next.token, top: [] };
      return { tokenId: next.token, logprob: safeLog(next.confidence!), top: topLogprobs(next.probabilities, ask.topK) };
    } catch (err) {
      throw overflow(err, this.capacity);
    }
  }
}

/** A drawn token's reply: its log-probability where asked, and never the LLM's distribution. */
function drawnPrediction(drawn: { tokenId: number; prob?: number }, logprob: boolean): Omit<NextResponse, keyof AppendResponse> {
  return logprob ? { tokenId: drawn.tokenId, logprob: safeLog(drawn.prob ?? 1), top: [] } : { tokenId: drawn.tokenId, top: [] };
}

/** A full session is the client's to know about (context_overflow); anything else is ours. */
function overflow(err: unknown, capacity: number): unknown {
  return err instanceof ContextShiftRefused ? new CloudError("context_overflow", `The session is full (${capacity} tokens)`) : err;
}

/** node-llama-cpp brands token IDs; these were range-checked against the vocabulary in checkDelta(). */
function asTokens(ids: readonly number[]): Token[] {
  return ids.slice() as Token[];
}

function topLogprobs(probabilities: Map<Token, number> | undefined, k: number): TokenLogprob[] {
  if (k === 0 || !probabilities) return [];
  const top: TokenLogprob[] = [];
  // node-llama-cpp returns the map sorted by probability, highest first
  for (const [tokenId, p] of probabilities) {
    if (top.length >= k) break;
    top.push({ tokenId, logprob: safeLog(p) });
  }
  return top.sort((a, b) => b.logprob - a.logprob); // stable: keeps the map's order on ties
}

/** ln p, clamped to [LOG_FLOOR, 0]: rounding can give p a hair above 1, and ln 0 is not JSON. */
function safeLog(p: number): number {
  return p > 0 ? Math.min(0, Math.max(LOG_FLOOR, Math.log(p))) : LOG_FLOOR;
}

function noop(): void {}
