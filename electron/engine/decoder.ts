/**
 * The collaborative decoder: where every token of an answer is chosen.
 *
 *   SLM step → router confidence → (confidence ≥ τ) the SLM's greedy token           origin "local"
 *                                → (confidence < τ) the cloud LLM's greedy token      origin "cloud"
 *                                                   or, if that call fails/times out,
 *                                                   the SLM's greedy token            origin "fallback"
 *   → the chosen token is fed back to the SLM (its KV cache holds the committed history) → next step.
 *
 * Hiding the network (the output is the same as waiting, only sooner): the cloud client keeps the
 * server's copy of the conversation current in the background (`observe`), so a call costs one LLM
 * step plus the round trip; while a call is in flight the SLM runs ahead on its own guess
 * (`runAhead`), kept when the cloud agrees or fails, rolled back when it does not — asking the cloud
 * about the routed positions of that guessed text at once (pipelined calls) when the cloud has lately
 * been confirming the SLM's guesses, so several routed tokens share one wait; and a call brings
 * back a short continuation of the LLM's (`draft`), verified in one SLM batch and accepted where the
 * blocking decoder would have produced the same tokens (`acceptDraft`), so clustered cloud positions
 * cost one round trip instead of one each.
 *
 * Answers stream as an async iterable of TokenEvents; `summary` resolves when the answer ends.
 */
import type { AnswerSummary, Candidate, StopReason, TokenEvent } from "../../shared/events.js";
import { countOrigins } from "../../shared/events.js";
import { routesToCloud, validateTau, type FeatureNeeds, type Router, type RouterFeatures } from "../../shared/router.js";
import { CloudCallError, type CloudPeer } from "./cloud/peer.js";
import { DraftPolicy, GuessPolicy } from "./cloudPolicy.js";
import { ReplicaFollower, type ReplicaAnswer } from "./replicaFollower.js";
import type { LocalModel, SlmStep } from "../../shared/node/localModel.js";
import { TokenTextStream } from "./textStream.js";

export interface GenerateOptions {
  /** the threshold, read before every token: a function lets τ change mid-answer */
  tau: number | (() => number);
  maxTokens: number;
  stop?: readonly string[];
  signal?: AbortSignal;
  /** SLM candidates to attach to each event for the inspector (costly on large vocabularies) */
  topK?: number;
  /**
   * How many tokens the SLM may run ahead on its own guess while a cloud call is in flight, rolled
   * back if the cloud disagrees (0 = wait idle, the blocking decoder). The tokens and origins are the
   * same either way; only the time differs. Default 32: the run stops anyway when the answers are in,
   * so the bound matters only for an SLM that writes many tokens per round trip.
   */
  speculate?: number;
  /**
   * Most tokens of the LLM's continuation to ask for with a cloud call (0 = none, the blocking
   * decoder). Each costs the server one more LLM step before it answers; each accepted where the
   * router would have gone to the cloud again saves a round trip: `DraftPolicy` decides when to ask.
   * Same tokens and origins either way. Default 4.
   */
  draft?: number;
  /**
   * While running ahead, ask the cloud about the routed positions of the guessed text too, when the
   * cloud has lately been confirming the SLM's guesses (`GuessPolicy`). Default true; false = never.
   */
  pipeline?: boolean;
  /**
   * Follow the cloud's replica of this SLM and router when it has one (ReplicaFollower): one round
   * trip for a stretch of routed positions. Default true; the run-ahead, pipelining and continuations
   * above serve clouds without one. Same tokens and origins either way.
   */
  replica?: boolean;
}

export const DEFAULT_SPECULATION = 32;
/** the run-ahead while the cloud mostly overrules the SLM's guesses (`runAheadLimit`) */
const SHORT_RUN_AHEAD = 8;
/**
 * Most calls one run-ahead pipelines after the call it waits on: each one waits on the server behind
 * the others (and a server bounds a session's queue, 8 requests by default), and each is wasted if an
 * earlier guess is overruled.
 */
export const MAX_PIPELINED_CALLS = 3;
export const DEFAULT_DRAFT = 4;

export interface Answer extends AsyncIterable<TokenEvent> {
  /** resolves when the answer has ended (after the iterator finishes) */
  readonly summary: Promise<AnswerSummary>;
}

/** What is learnt about a cloud (what a continuation costs, how often it confirms the SLM's guesses) is kept per peer, across answers. */
const policies = new WeakMap<CloudPeer, { drafts: DraftPolicy; guesses: GuessPolicy }>();

export class CollaborativeDecoder {
  /** when to ask a call for a continuation, learnt from the calls to this cloud */
  private readonly drafts: DraftPolicy;
  /** whether to ask the cloud ahead, on the SLM's guessed text, learnt from this cloud's answers */
  private readonly guesses: GuessPolicy;

  constructor(
    readonly slm: LocalModel,
    readonly router: Router,
    /** the cloud, or null when none is configured (routed tokens then fall back to the SLM) */
    readonly cloud: CloudPeer | null,
  ) {
    let policy = cloud ? policies.get(cloud) : undefined;
    if (!policy) {
      policy = { drafts: new DraftPolicy(), guesses: new GuessPolicy() };
      if (cloud) policies.set(cloud, policy);
    }
    this.drafts = policy.drafts;
    this.guesses = policy.guesses;
  }

  generate(prompt: readonly number[], opts: GenerateOptions): Answer {
    let resolveSummary!: (s: AnswerSummary) => void;
    let rejectSummary!: (e: unknown) => void;
    const summary = new Promise<AnswerSummary>((res, rej) => {
      resolveSummary = res;
      rejectSummary = rej;
    });
    summary.catch(() => {}); // the iterator rethrows the same error; don't report it twice as unhandled
    const run = this.run(prompt, opts, resolveSummary);
    return {
      summary,
      [Symbol.asyncIterator]: () => {
        const it = run[Symbol.asyncIterator]();
        return {
          next: async () => {
            try {
              return await it.next();
            } catch (err) {
              rejectSummary(err);
              throw err;
            }
          },
          return: async () => {
            // the consumer stopped iterating early: end the answer as aborted, releasing the SLM
            const r = await it.return!(undefined);
            return r;
          },
        };
      },
    };
  }

  private async *run(
    prompt: readonly number[],
    opts: GenerateOptions,
    done: (s: AnswerSummary) => void,
  ): AsyncGenerator<TokenEvent, void, undefined> {
    const t0 = performance.now();
    const tauOf = typeof opts.tau === "function" ? opts.tau : () => opts.tau as number;
    const needs: FeatureNeeds = {
      top1Prob: this.router.needs.top1Prob,
      topK: Math.max(this.router.needs.topK, opts.topK ?? 0),
      hidden: this.router.needs.hidden,
    };
    const speculate = Math.max(0, Math.floor(opts.speculate ?? DEFAULT_SPECULATION));
    const draft = Math.max(0, Math.floor(opts.draft ?? DEFAULT_DRAFT));
    const stream = new TokenTextStream((t, last) => this.slm.detokenize(t, last), opts.stop ?? []);
    const history = [...prompt];
    const events: TokenEvent[] = [];
    const cloudBytesAtStart = this.cloud ? { up: this.cloud.stats.bytesUp, down: this.cloud.stats.bytesDown } : { up: 0, down: 0 };
    // an answer that ends any other way than those set below was stopped by its consumer
    let stopReason: StopReason = "abort";
    let lastEvent: TokenEvent | undefined;
    let failed = false;

    const finish = (): AnswerSummary => {
      const counts = countOrigins(events);
      const elapsedMs = performance.now() - t0;
      return {
        ...counts,
        bytesUp: this.cloud ? this.cloud.stats.bytesUp - cloudBytesAtStart.up : 0,
        bytesDown: this.cloud ? this.cloud.stats.bytesDown - cloudBytesAtStart.down : 0,
        tokensPerSecond: elapsedMs > 0 ? (counts.tokens * 1000) / elapsedMs : 0,
        text: stream.text,
        stopReason,
        router: this.router.name,
        elapsedMs,
      };
    };

    // the cloud's replica of this SLM and router, when it has one and the options allow
    const replica = this.cloud?.route && this.router.replica && opts.replica !== false ? new ReplicaFollower(this.cloud, this.router) : null;
    if (replica) this.cloud?.prepareRoute?.(this.router);

    /** Commits a chosen token; true when the answer ends with it (end of generation, stop string). */
    const commit = (event: TokenEvent): "eog" | "stop" | "go" => {
      if (this.slm.isEndOfGeneration(event.tokenId)) return "eog";
      history.push(event.tokenId);
      replica?.check(history);
      const released = stream.push(event.tokenId);
      event.text = released.text;
      events.push(event);
      lastEvent = event;
      this.cloud?.observe?.(history); // the cloud's copy follows in the background
      return released.stopped ? "stop" : "go";
    };

    try {
      if (opts.signal?.aborted) return;
      let step: SlmStep = await this.slm.begin(prompt, needs);
      this.cloud?.observe?.(history); // the server can read the prompt while the SLM writes
      let index = 0;
      // whether the router sent the previous position to the cloud: then a continuation is worth asking for
      let previousRouted = false;
      while (index < opts.maxTokens) {
        if (opts.signal?.aborted) return;
        const tau = validateTau(tauOf());
        const confidence = this.router.score(featuresOf(step, index));
        const event = this.localEvent(step, confidence, tau, index);
        // tokens the SLM guessed past this position while the cloud answered, and its step after them
        // (null when the cloud overruled one of them: the SLM must read the cloud's token first)
        let ahead: { events: TokenEvent[]; after: SlmStep | null } | null = null;
        // tokens taken from the call's continuation, and the SLM's step after them (null: not yet taken)
        let verified: { events: TokenEvent[]; after: SlmStep | null } | null = null;
        if (routesToCloud(confidence, tau)) {
          if (!this.cloud) {
            event.origin = "fallback";
            event.fallbackReason = "no cloud configured";
          } else {
            const room = Math.min(opts.maxTokens - index - 1, this.slm.contextSize - history.length - 2);
            // with the cloud's replica, the answer comes from its stream; else from a call of its own
            // (an entry already in needs no run-ahead: guessing past it would only cost a step to undo)
            const inAlready = replica?.arrived(history) ?? false;
            const followed = replica?.ask(history, index, tau, room + 1, opts.signal) ?? null;
            const call = followed
              ? this.followCall(this.cloud, followed, history, opts.signal)
              : this.askCloud(this.cloud, history, opts.signal, this.drafts.ask(Math.min(draft, room), previousRouted));
            // while the answer is on its way, the SLM runs ahead on its own guess, kept if the cloud confirms it
            const guessed =
              Math.min(speculate, room) > 0 && !inAlready
                ? await this.runAhead(this.cloud, history, step, index, Math.min(this.runAheadLimit(speculate), room), call, needs, tauOf, opts.signal, opts.pipeline !== false && !followed)
                : null;
            const answer = await call.result;
            if (answer === null) return; // aborted while waiting on the cloud
            Object.assign(event, answer.fields);
            if (event.origin === "cloud") this.guesses.observe(event.tokenId === step.tokenId);
            if (guessed && event.tokenId !== step.tokenId) {
              // the cloud overruled the SLM's guess: forget the guessed tokens, as if never evaluated
              await this.slm.rollback(history.length);
            } else if (guessed) {
              ahead = await this.settleGuesses(guessed, history.length);
              if (ahead === null) return; // aborted while waiting on the cloud
            }
            // a continuation is read right after the cloud's token, or after plain guesses: with a
            // pipelined call among them, the text after it is that call's to answer
            const plain = ahead === null || (!guessed?.links.some((l) => l.call) && ahead.after !== null);
            const continuation = plain ? usableContinuation(answer.draft, ahead?.events ?? [], room) : [];
            if (continuation.length > 0) {
              verified = await this.acceptDraft(event.tokenId, ahead as { events: TokenEvent[]; after: SlmStep } | null, continuation, history.length, index, needs, tauOf);
            }
          }
        }
        for (const e of [event, ...(ahead?.events ?? []), ...(verified?.events ?? [])]) {
          const r = commit(e);
          if (r === "eog") {
            stopReason = "eog";
            return;
          }
          previousRouted = routesToCloud(e.confidence, e.tau);
          yield e;
          if (r === "stop") {
            stopReason = "stop-string";
            return;
          }
          index++;
        }
        if (index >= opts.maxTokens) break; // don't pay for a step nobody reads
        if (history.length >= this.slm.contextSize) {
          stopReason = "context-full";
          return;
        }
        const next = verified ? verified.after : ahead ? ahead.after : null;
        step = next ?? (await this.slm.advance(lastEvent!.tokenId, needs));
      }
      stopReason = "max-tokens";
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      replica?.close();
      // text held back (a partial stop string, an unfinished character) belongs to the last token
      const tail = stream.flush();
      if (tail.text && lastEvent) lastEvent.text += tail.text;
      if (!failed) done(finish());
    }
  }

  /**
   * How far to run ahead: guessed tokens are kept only when the cloud confirms the guess, so while it
   * mostly overrules the SLM (`GuessPolicy`) a short run is enough to cover the common case and
   * spares the device's compute (and battery) — and, where the cloud shares the machine, the cloud's.
   */
  private runAheadLimit(speculate: number): number {
    return this.guesses.pipeline ? speculate : Math.min(speculate, SHORT_RUN_AHEAD);
  }

  /** The event for keeping the SLM's own token at this position. */
  private localEvent(step: SlmStep, confidence: number, tau: number, index: number): TokenEvent {
    const event: TokenEvent = {
      index,
      tokenId: step.tokenId,
      text: "",
      origin: "local",
      confidence,
      tau,
      cloudLatencyMs: null,
      slmTokenId: step.tokenId,
    };
    if (step.top) event.slmTop = step.top.map((c): Candidate => ({ ...c, text: this.slm.detokenize([c.tokenId]) }));
    return event;
  }

  /**
   * Starts the cloud call for the position after `history`. Resolves to the event fields it decides
   * (the cloud's token, or the SLM's own marked `fallback` when the call fails), or null when aborted.
   */
  private askCloud(cloud: CloudPeer, history: readonly number[], signal: AbortSignal | undefined, draft: number): CloudCall {
    const t0 = performance.now();
    const call: CloudCall = { result: Promise.resolve(null) };
    call.result = cloud.next(history, signal, draft > 0 ? { draft } : undefined).then(
      (c): CloudAnswer => {
        this.drafts.observe(c);
        return {
          fields: {
            tokenId: c.tokenId,
            origin: "cloud",
            cloudLatencyMs: c.latencyMs,
            cloud: { tokenId: c.tokenId, logprob: c.logprob, top: c.top },
          },
          draft: c.draft?.slice(0, draft) ?? [],
        };
      },
      (err): CloudAnswer | null => {
        if (signal?.aborted) return null;
        return {
          fields: {
            origin: "fallback",
            fallbackReason: err instanceof CloudCallError ? err.message : `cloud error: ${(err as Error)?.message}`,
            // a call skipped because the cloud is known to be down cost no network time
            cloudLatencyMs: err instanceof CloudCallError && err.reason === "offline" ? null : performance.now() - t0,
          },
          draft: [],
        };
      },
    );
    void call.result.then((a) => (call.answer = a));
    return call;
  }

  /**
   * The call for a routed position answered by the cloud's replica stream (ReplicaFollower): the same
   * fields a call gives. Should the stream become unusable and no new one open (the cloud went
   * offline meanwhile, say), a call of its own answers, as the blocking decoder's would.
   */
  private followCall(cloud: CloudPeer, pending: Promise<ReplicaAnswer>, history: readonly number[], signal: AbortSignal | undefined): CloudCall {
    const call: CloudCall = { result: Promise.resolve(null) };
    call.result = pending.then((a): CloudAnswer | null | Promise<CloudAnswer | null> => {
      switch (a.kind) {
        case "aborted":
          return null;
        case "unavailable":
          // `history` is unchanged until this call's answer is committed
          return this.askCloud(cloud, history, signal, 0).result;
        case "cloud":
          // a stream carries token IDs only: a log-probability costs the server a sort of the vocabulary
          return { fields: { tokenId: a.tokenId, origin: "cloud", cloudLatencyMs: a.latencyMs, cloud: { tokenId: a.tokenId, top: [] } }, draft: [] };
        case "failed":
          return { fields: { origin: "fallback", fallbackReason: a.error.message, cloudLatencyMs: a.latencyMs }, draft: [] };
      }
    });
    void call.result.then((a) => (call.answer = a));
    return call;
  }

  /**
   * While the cloud answers position `index`, the SLM goes on as if its own token there will stand
   * (it does whenever the cloud agrees or fails): it evaluates that token and keeps choosing its own
   * tokens after it until the call settles, the end of generation, or `room` tokens. A position the
   * router sends to the cloud ends the run too — unless the cloud has lately been confirming the
   * SLM's guesses (`GuessPolicy`): then the cloud is asked about that position at once, on the
   * guessed text (a pipelined call), and the SLM goes on with its own guess there as well. If the
   * cloud then confirms each guess, these tokens are exactly what the blocking decoder would have
   * produced after waiting — same prefix, same greedy SLM, same router, the same LLM answers — and
   * they are committed at once (`settleGuesses`); from the first guess it overrules, they are rolled
   * back. The time the SLM would have spent waiting is spent on them instead.
   */
  private async runAhead(
    cloud: CloudPeer,
    history: readonly number[],
    routed: SlmStep,
    index: number,
    room: number,
    call: CloudCall,
    needs: FeatureNeeds,
    tauOf: () => number,
    signal: AbortSignal | undefined,
    pipeline: boolean,
  ): Promise<{ links: Link[]; after: SlmStep }> {
    const links: Link[] = [];
    let pipelined = 0;
    let after = await this.slm.advance(routed.tokenId, needs);
    // go on while an answer is awaited and none has overruled a guess yet: every token made meanwhile
    // is time the decoder would otherwise spend waiting
    const waiting = () =>
      (!settled(call) || links.some((l) => l.call && !settled(l.call))) &&
      !overrules(call, routed.tokenId) &&
      !links.some((l) => overrules(l.call, l.guess));
    while (waiting() && links.length < room && !signal?.aborted) {
      const position = index + 1 + links.length;
      const tau = validateTau(tauOf());
      const confidence = this.router.score(featuresOf(after, position));
      if (this.slm.isEndOfGeneration(after.tokenId)) break;
      const link: Link = { event: this.localEvent(after, confidence, tau, position), guess: after.tokenId, call: null };
      if (routesToCloud(confidence, tau)) {
        // that position must wait for this answer, unless it may be asked about now
        if (!pipeline || !this.guesses.pipeline || pipelined >= MAX_PIPELINED_CALLS) break;
        link.call = this.askCloud(cloud, [...history, routed.tokenId, ...links.map((l) => l.guess)], signal, 0);
        pipelined++;
      }
      links.push(link);
      after = await this.slm.advance(link.guess, needs);
    }
    return { links, after };
  }

  /**
   * Commits what the cloud confirms of the run-ahead (the first guess, at the routed position, is
   * confirmed already): each pipelined call's answer is awaited in order; one that agrees with the
   * guess (or fails: the SLM's own token stands then, as it would for the blocking decoder) keeps the
   * run going, the first that overrules it ends the run with the cloud's token there, and the SLM's
   * guesses after it are rolled back. `history` is the committed length before the routed position.
   * Resolves to the events to commit and the SLM's step after them (null after an overruled guess),
   * or null when aborted.
   */
  private async settleGuesses(ahead: { links: Link[]; after: SlmStep }, history: number): Promise<{ events: TokenEvent[]; after: SlmStep | null } | null> {
    const events: TokenEvent[] = [];
    for (const [i, link] of ahead.links.entries()) {
      events.push(link.event);
      if (!link.call) continue;
      const answer = await link.call.result;
      if (answer === null) return null;
      Object.assign(link.event, answer.fields);
      if (link.event.origin !== "cloud") continue;
      this.guesses.observe(link.event.tokenId === link.guess);
      if (link.event.tokenId !== link.guess) {
        await this.slm.rollback(history + 1 + i);
        return { events, after: null };
      }
    }
    return { events, after: ahead.after };
  }

  /**
   * Takes what it can of the LLM's continuation after the committed `token` (and the run-ahead
   * tokens `ahead` holds, which the continuation agrees with): the tokens the blocking decoder would
   * have produced anyway. At each position, the SLM is evaluated on the continuation so far (one
   * batch for all of it) and the router scores that step as it would have: a position it sends to
   * the cloud gets the LLM's token from the continuation — the LLM's greedy token after exactly this
   * history, what a call would have returned — and a position it keeps gets the SLM's own token,
   * which continues the verified run only while it equals the continuation's. The first position
   * where they differ ends the run with the SLM's token, and the continuation after it is dropped.
   * `history` is the committed length before `token`; `index` is `token`'s answer position.
   */
  private async acceptDraft(
    token: number,
    ahead: { events: TokenEvent[]; after: SlmStep } | null,
    tokens: readonly number[],
    history: number,
    index: number,
    needs: FeatureNeeds,
    tauOf: () => number,
  ): Promise<{ events: TokenEvent[]; after: SlmStep | null }> {
    const skipped = ahead?.events.length ?? 0;
    // the SLM's step at each draft position, and after the last: from one batch, unless the router
    // reads the hidden state, which llama.cpp exposes for the last row of a decode only — then one
    // token at a time, which costs no more than decoding them would have (and stops at the first miss)
    const batch = needs.hidden ? null : await this.slm.evaluateAll(ahead ? tokens : [token, ...tokens], needs);
    let at: SlmStep = ahead ? ahead.after : batch ? batch[0]! : await this.slm.advance(token, needs);
    const events: TokenEvent[] = [];
    for (let j = 0; j < tokens.length; j++) {
      const position = index + 1 + skipped + j;
      const tau = validateTau(tauOf());
      const confidence = this.router.score(featuresOf(at, position));
      const event = this.localEvent(at, confidence, tau, position);
      events.push(event);
      if (routesToCloud(confidence, tau)) {
        event.tokenId = tokens[j]!;
        event.origin = "cloud";
        // the server sends a continuation's tokens without log-probabilities (NextResponse.draft)
        event.cloud = { tokenId: tokens[j]!, top: [], fromDraft: true };
      } else if (at.tokenId !== tokens[j]) {
        // the blocking decoder keeps the SLM's token here; the continuation no longer applies
        if (batch) await this.slm.rollback(history + 1 + skipped + j);
        return { events, after: null };
      }
      if (this.slm.isEndOfGeneration(event.tokenId)) return { events, after: null }; // the answer ends here
      at = batch ? batch[ahead ? j : j + 1]! : await this.slm.advance(tokens[j]!, needs);
    }
    return { events, after: at };
  }
}

/** A position the SLM guessed while a call was in flight, and the pipelined call about it, if any. */
interface Link {
  event: TokenEvent;
  guess: number;
  call: CloudCall | null;
}

interface CloudAnswer {
  /** the event fields the call decides: the cloud's token, or the SLM's own marked `fallback` */
  fields: Partial<TokenEvent>;
  /** the LLM's continuation after the cloud's token (empty on a fallback) */
  draft: readonly number[];
}

interface CloudCall {
  result: Promise<CloudAnswer | null>;
  /** what `result` resolved to, once it has (undefined until then) */
  answer?: CloudAnswer | null;
}

const settled = (call: CloudCall): boolean => call.answer !== undefined;

/** Whether a settled call's answer overrules `guess` (a failed call leaves the SLM's guess standing). */
function overrules(call: CloudCall | null, guess: number): boolean {
  const fields = call?.answer?.fields;
  return fields?.origin === "cloud" && fields.tokenId !== guess;
}

/**
 * The part of a continuation that follows the run-ahead tokens, if it agrees with them (each of them
 * is the SLM's own token at a position the router kept, so a continuation that differs there was
 * written after other text and says nothing about what follows), capped at `room` tokens in all.
 */
function usableContinuation(draft: readonly number[], ahead: readonly TokenEvent[], room: number): readonly number[] {
  for (let i = 0; i < ahead.length; i++) if (draft[i] !== ahead[i]!.tokenId) return [];
  return draft.slice(ahead.length, Math.max(ahead.length, room));
}

function featuresOf(step: SlmStep, position: number): RouterFeatures {
  return { top1Prob: step.top1Prob, topProbs: step.top?.map((c) => c.prob), hidden: step.hidden, position };
}
