/**
 * The local small model (SLM): loads a GGUF through node-llama-cpp (Metal on Apple Silicon, CPU
 * elsewhere), turns chat messages into prompt tokens with the model's own chat template, and steps
 * through an answer one token at a time, exposing what the router needs at each position:
 * the greedy token, its probability, optionally the top-k candidates and the last hidden state.
 *
 * The caller decides which token is actually committed (the SLM's own or the cloud's) and feeds it
 * back with `advance`, so the KV cache always holds exactly the committed history.
 */
import {
  JinjaTemplateChatWrapper,
  type ChatHistoryItem,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import type { ChatMessage } from "../shared/chat.js";
import type { Candidate } from "../shared/events.js";
import type { ModelIdentity } from "../shared/protocol.js";
import type { FeatureNeeds } from "../shared/router.js";
import type { SamplingSettings } from "../shared/sampling.js";
import { getTandemLlama } from "./llama.js";
import { loadModelFile, modelIdentity, resolveModelSource, weightsFingerprint, type ResolveOptions } from "./modelFile.js";
import { hiddenStateContextOptions, readLastHiddenState } from "./hiddenState.js";
import { drawToken, needsProbabilities, samplePath, samplerOptions, type SamplePath } from "./sampling.js";

/** What one SLM step yields for the position after the committed history. */
export interface SlmStep {
  /**
   * the SLM's next token: its greedy (temperature 0) token, or the token drawn with the sampling
   * settings at this position (shared/sampling.ts)
   */
  tokenId: number;
  /** the drawn token's probability in the distribution it was drawn from; absent when greedy */
  sampledProb?: number;
  /**
   * the probability of the (penalised) distribution's most likely token under the full softmax; NaN
   * when not requested. Without penalties, that of the greedy token; the features are never those of
   * the sampling distribution (docs/sampling.md)
   */
  top1Prob: number;
  /** top candidates of the (penalised) distribution, highest first, when requested */
  top?: Candidate[];
  /** post-final-norm hidden state, when requested */
  hidden?: Float64Array;
}

export interface LocalModelOptions extends ResolveOptions {
  /**
   * tokens the conversation may hold (prompt + answer); default min(4096, the model's training size);
   * "model": the model's training size (GGUF context_length), smaller if memory cannot hold it
   */
  contextSize?: number | "model";
  /** create the context so the hidden state can be read (needed by learned routers) */
  hiddenState?: boolean;
}

/** What a step computes: the router's features (and the candidates shown), and how the token is chosen (absent: greedy). */
export interface StepNeeds extends FeatureNeeds {
  sampling?: SamplingSettings;
}

/** node-llama-cpp's generation loop, suspended after each predicted token (see `LocalModel.step`). */
type StepGenerator = AsyncGenerator<
  { token: Token; confidence?: number; probabilities?: Map<Token, number> },
  void,
  Token | Token[] | undefined
>;

export class LocalModel {
  /** tokens evaluated by this model since it was loaded (prompt tokens not reused from the KV cache, and each step) */
  evaluatedTokens = 0;
  /** the running generation loop and the features it was started for; null until the first step */
  private stepper: { gen: StepGenerator; key: string } | null = null;
  /** the tokens the penalties of the position being predicted look back on (read by the stepper's sampler) */
  private penaltyHistory: readonly number[] = [];

  private constructor(
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
    readonly identity: ModelIdentity,
    readonly file: string,
    private readonly hiddenEnabled: boolean,
    /** false for a model view made by `onModel`: the model belongs to the caller */
    private readonly ownsModel = true,
  ) {}

  static async load(src: string, opts: LocalModelOptions = {}): Promise<LocalModel> {
    const file = await resolveModelSource(src, opts);
    const llama = await getTandemLlama();
    const { model, threads } = await loadModelFile(llama, file);
    try {
      return await LocalModel.create(model, file, threads, opts, true);
    } catch (err) {
      await model.dispose();
      throw err;
    }
  }

  /**
   * Another stepper over an already loaded model, with a context of its own (the cloud server's SLM
   * replica keeps several, one per conversation it follows). `dispose` frees the context, not the model.
   */
  static onModel(
    model: LlamaModel,
    file: string,
    threads: number | undefined,
    opts: Omit<LocalModelOptions, keyof ResolveOptions> = {},
  ): Promise<LocalModel> {
    return LocalModel.create(model, file, threads, opts, false);
  }

  private static async create(
    model: LlamaModel,
    file: string,
    threads: number | undefined,
    opts: Omit<LocalModelOptions, keyof ResolveOptions>,
    owns: boolean,
  ): Promise<LocalModel> {
    const train = model.trainContextSize;
    // node-llama-cpp picks the largest size in [min, max] that fits the machine's memory
    const contextSize =
      opts.contextSize === "model" ? { min: Math.min(512, train), max: train } : Math.min(opts.contextSize ?? 4096, train);
    const context = await model.createContext({
      contextSize,
      sequences: 1, // the hidden state is read from the last decode: one sequence per context
      threads,
      ...(opts.hiddenState ? hiddenStateContextOptions() : {}),
    });
    // the weights' fingerprint lets a cloud tell whether its SLM replica is this model (RouteRequest)
    const identity = { ...modelIdentity(model), weights: weightsFingerprint(file) };
    return new LocalModel(model, context, context.getSequence(), identity, file, !!opts.hiddenState, owns);
  }

  get vocabSize(): number {
    return this.identity.vocabSize;
  }

  get hiddenSize(): number {
    return this.model.embeddingVectorSize;
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  /** Tokens the KV cache holds (the committed history). */
  get history(): readonly Token[] {
    return this.sequence.contextTokens;
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate() != null;
  }

  isEndOfGeneration(token: number): boolean {
    return this.model.isEogToken(token as Token);
  }

  detokenize(tokens: readonly number[], lastTokens: readonly number[] = []): string {
    return this.model.detokenize(tokens as Token[], false, lastTokens as Token[]);
  }

  /** `text` cut to its last `tokens` tokens (as the text alone tokenises), for a message longer than the window. */
  keepEnd(text: string, tokens: number): string {
    const all = this.model.tokenize(text, false);
    if (all.length <= tokens) return text;
    return this.model.detokenize(all.slice(all.length - Math.max(0, tokens)), false);
  }

  /** Plain text to tokens, with BOS when the model wants one (base models: continuation). */
  tokenizeText(text: string): number[] {
    const tokens = this.model.tokenize(text, false);
    const bos = this.model.tokens.bos;
    return this.model.tokens.shouldPrependBosToken && bos != null ? [bos, ...tokens] : tokens;
  }

  /**
   * Prompt tokens for the next assistant answer. With a chat template in the GGUF, that template
   * (jinja) renders the conversation; a base model without one continues the concatenated text.
   * These tokens are built once, here, and sent to the cloud as IDs: both models see identical tokens.
   */
  promptFromMessages(messages: readonly ChatMessage[]): number[] {
    const template = this.chatTemplate();
    if (template == null) return this.tokenizeText(messages.map((m) => m.content).join(""));
    const wrapper = new JinjaTemplateChatWrapper({ template });
    const chatHistory: ChatHistoryItem[] = messages.map((m): ChatHistoryItem =>
      m.role === "assistant" ? { type: "model", response: [m.content] } : { type: m.role, text: m.content },
    );
    chatHistory.push({ type: "model", response: [] }); // the answer to generate
    const { contextText } = wrapper.generateContextState({ chatHistory });
    return contextText.tokenize(this.model.tokenizer);
  }

  /**
   * Makes the KV cache hold exactly `prompt` (reusing the longest common prefix already evaluated)
   * and predicts the next token.
   */
  async begin(prompt: readonly number[], needs: StepNeeds): Promise<SlmStep> {
    if (prompt.length === 0) throw new Error("The prompt is empty");
    if (prompt.length >= this.contextSize) {
      throw new Error(`The prompt (${prompt.length} tokens) does not fit the SLM's context (${this.contextSize} tokens)`);
    }
    const held = this.sequence.contextTokens;
    let keep = this.sequence.compareContextTokens(prompt as Token[]).firstDifferentIndex;
    // at least one token must be evaluated to get the next-token distribution
    keep = Math.min(keep, prompt.length - 1);
    if (keep < held.length) await this.sequence.eraseContextTokenRanges([{ start: keep, end: held.length }]);
    return this.step(prompt.slice(keep), needs);
  }

  /** Commits `token` (chosen by the SLM or the cloud) and predicts the one after it. */
  async advance(token: number, needs: StepNeeds): Promise<SlmStep> {
    return this.step([token], needs);
  }

  /** Tokens the KV cache holds (the committed history, plus any speculative tokens not yet rolled back). */
  get length(): number {
    return this.sequence.contextTokens.length;
  }

  /**
   * Forgets every token after the first `length` (speculative tokens the cloud overruled). The next
   * `advance` continues from there exactly as if they had never been evaluated.
   */
  async rollback(length: number): Promise<void> {
    const held = this.sequence.contextTokens.length;
    if (length < 1 || length > held) throw new RangeError(`rollback to ${length} of ${held} tokens`);
    if (length < held) await this.sequence.eraseContextTokenRanges([{ start: length, end: held }]);
  }

  /** Empties the KV cache (the next `begin` evaluates its whole prompt). */
  async clear(): Promise<void> {
    const held = this.sequence.contextTokens.length;
    if (held > 0) await this.sequence.eraseContextTokenRanges([{ start: 0, end: held }]);
  }

  /** Verifies a run of tokens in one batch: the SLM's token (greedy or drawn) after each of them. */
  async evaluateAll(tokens: readonly number[], needs: StepNeeds): Promise<SlmStep[]> {
    const path = samplePath(needs.sampling, needs);
    const before = [...this.sequence.contextTokens];
    this.evaluatedTokens += tokens.length;
    const out = await this.sequence.controlledEvaluate(
      tokens.map((t, i) => {
        const history = [...before, ...tokens.slice(0, i + 1)];
        return [t as Token, { generateNext: this.generateNextOptions(needs, path, () => history) }];
      }),
    );
    return out.map((r, i) => this.toStep(r?.next, needs, path, before.length + i + 1, i === tokens.length - 1));
  }

  async dispose(): Promise<void> {
    await this.stopStepper();
    await this.context.dispose();
    if (this.ownsModel) await this.model.dispose();
  }

  /**
   * Evaluates `tokens` after what the KV cache holds and predicts the next token, through
   * node-llama-cpp's own generation loop (`evaluateWithMetadata`), kept suspended between steps: its
   * `next(token)` takes the token we chose instead of the one it predicted. Why not one
   * `controlledEvaluate` call per token: each call builds and frees a native sampler, which cost ~2 ms
   * a token on a 152k vocabulary (bench figure a, "token only" was 1.08× node-llama-cpp's loop). The
   * loop holds no lock while suspended and decodes at the sequence's current position, so rollbacks
   * and batch verifications between steps are safe. A new loop starts only when the features asked
   * for change or the loop ended.
   */
  private async step(tokens: readonly number[], needs: StepNeeds): Promise<SlmStep> {
    const path = samplePath(needs.sampling, needs);
    // the seed is not node-llama-cpp's to know (the draw is ours): a new answer keeps the loop
    const { seed: _seed, ...params } = needs.sampling ?? {};
    const key = `${needs.top1Prob}/${needs.topK > 0}/${path}/${JSON.stringify(params)}`;
    let result: IteratorResult<{ token: Token; confidence?: number; probabilities?: Map<Token, number> }, void>;
    this.penaltyHistory = [...this.sequence.contextTokens, ...tokens];
    const position = this.penaltyHistory.length;
    this.evaluatedTokens += tokens.length;
    try {
      if (this.stepper?.key === key) {
        result = await this.stepper.gen.next(tokens.length === 1 ? (tokens[0] as Token) : (tokens as Token[]));
      } else {
        await this.stopStepper();
        const gen: StepGenerator = this.sequence.evaluateWithMetadata(
          tokens as Token[],
          { confidence: needs.top1Prob, probabilities: needs.topK > 0 || needsProbabilities(path) },
          // greedy: temperature 0, and probabilities over the whole vocabulary (not a truncated set);
          // end-of-generation tokens are the router's and the caller's to judge, not the loop's
          { ...samplerOptions(needs.sampling, path, () => this.penaltyHistory), yieldEogToken: true },
        );
        this.stepper = { gen, key };
        result = await gen.next();
      }
    } catch (err) {
      this.stepper = null; // a generator that threw has finished
      throw err;
    }
    if (result.done) {
      this.stepper = null;
      throw new Error("The SLM produced no next token (the model may not support generation)");
    }
    return this.toStep(result.value, needs, path, position, true);
  }

  private async stopStepper(): Promise<void> {
    const s = this.stepper;
    this.stepper = null;
    await s?.gen.return(undefined);
  }

  private generateNextOptions(needs: StepNeeds, path: SamplePath, history: () => readonly number[]) {
    return {
      token: true,
      // greedy: temperature 0, and probabilities over the whole vocabulary (not a truncated set)
      options: samplerOptions(needs.sampling, path, history),
      confidence: needs.top1Prob,
      // node-llama-cpp 3.21 offers top-k only through the full probability map (costly on a 152k
      // vocabulary: the bench reports it); ask for it only when a consumer wants candidates
      probabilities: needs.topK > 0 || needsProbabilities(path),
    };
  }

  private toStep(
    next: { token?: Token | null; confidence?: number; probabilities?: Map<Token, number> } | undefined,
    needs: StepNeeds,
    path: SamplePath,
    position: number,
    isLastOfDecode: boolean,
  ): SlmStep {
    if (next?.token == null) throw new Error("The SLM produced no next token (the model may not support generation)");
    const drawn = drawToken({ token: next.token, probabilities: next.probabilities }, needs.sampling, path, position);
    const step: SlmStep = { tokenId: drawn.tokenId, top1Prob: next.confidence ?? Number.NaN };
    if (drawn.prob !== undefined) step.sampledProb = drawn.prob;
    // the fast path's probabilities are the sampler's top-k at temperature 1: not features
    if (path !== "fast" && next.probabilities) {
      if (needs.topK > 0) step.top = topCandidates(next.probabilities, needs.topK);
      if (Number.isNaN(step.top1Prob) && step.top) step.top1Prob = step.top[0]?.prob ?? Number.NaN;
    }
    // the hidden state is that of the last output row of the most recent decode only
    if (needs.hidden && this.hiddenEnabled && isLastOfDecode) step.hidden = readLastHiddenState(this.context, this.hiddenSize);
    return step;
  }

  private chatTemplate(): string | null {
    const t = (this.model.fileInfo.metadata as { tokenizer?: { chat_template?: unknown } }).tokenizer?.chat_template;
    return typeof t === "string" && t.trim() !== "" ? t : null;
  }
}

/** The first `k` entries of node-llama-cpp's probability map (sorted, most likely first). */
function topCandidates(probabilities: Map<Token, number>, k: number): Candidate[] {
  const top: Candidate[] = [];
  for (const [tokenId, prob] of probabilities) {
    if (top.length >= k) break;
    top.push({ tokenId, prob });
  }
  return top;
}
