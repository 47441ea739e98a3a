/**
 * The server's replica of the device's SLM and router: what lets one round trip answer every routed
 * position of a stretch of the answer instead of one (RouteRequest in shared/protocol.ts).
 *
 * With the SLM beside the LLM, the server can make the device's routing decisions itself: at each
 * position the replica SLM's step, the device's router on it, and the LLM's token where that router
 * routes. The device verifies every position against its own SLM and router, so the replica changes
 * when tokens arrive, never which: a replica that decides differently (other hardware rounding a
 * confidence near τ the other way) only ends the stretch early.
 *
 * Each followed conversation needs the SLM's KV cache for its history; the replica keeps a few
 * contexts (slots), one sequence each (the hidden state is read from a context's last decode, see
 * inference/hiddenState.ts), reused by the conversation that last held one (its prefix is cached)
 * or else the least recently used. With every slot busy a /route answers its first position only.
 * The SLM is small next to the LLM (Qwen2.5-0.5B beside 32B: 1.5%), and so are its slots' caches.
 */
import { createHash } from "node:crypto";
import type { Llama, LlamaModel } from "node-llama-cpp";
import type { ModelIdentity, ReplicaInfo, ReplicaRouter } from "../shared/protocol.js";
import { ConfidenceRouter, type Router } from "../shared/router.js";
import { decideStep } from "../shared/routing.js";
import type { SamplingSettings } from "../shared/sampling.js";
import { LocalModel, type SlmStep } from "../inference/localModel.js";
import { loadModelFile, modelIdentity, weightsFingerprint } from "../inference/modelFile.js";
import { LearnedRouter } from "../router/learnedRouter.js";
import { decodeRouterFile, RouterFileError } from "../router/file.js";
import { CloudError } from "./errors.js";

export const DEFAULT_REPLICA_SLOTS = 4;
/** uploaded router networks kept, all clients together (least recently used dropped first) */
const MAX_ROUTERS = 64;

export interface ReplicaOptions {
  /** conversations the replica follows at once (default 4) */
  slots?: number;
  /** tokens per slot (default: the server's session size) */
  contextSize: number;
}

/** One stretch of routed decoding on the replica: the SLM's step at the current position and the router's decision. */
export interface ReplicaRun {
  /** the SLM's token at the current position (greedy, or drawn as the device draws it), and whether the router sends the position to the LLM */
  decide(position: number): { tokenId: number; routes: boolean };
  /** commits `token` at the current position and steps to the next */
  advance(token: number): Promise<void>;
  /** tokens the slot can hold */
  readonly capacity: number;
  release(): void;
}

interface Slot {
  slm: LocalModel;
  owner: string | null;
  busy: boolean;
  lastUsed: number;
}

export class SlmReplica {
  readonly info: ReplicaInfo;
  private readonly slots: Slot[] = [];
  private readonly maxSlots: number;
  /** uploaded router networks by owner + digest, in use order (a Map iterates in insertion order) */
  private readonly routers = new Map<string, Router>();
  private readonly confidence = new ConfidenceRouter();
  private clock = 0;
  private disposed = false;

  private constructor(
    private readonly model: LlamaModel,
    private readonly file: string,
    private readonly threads: number | undefined,
    readonly identity: ModelIdentity,
    private readonly contextSize: number,
    slots: number,
  ) {
    this.maxSlots = slots;
    this.info = { model: identity, routers: ["confidence", "mlp"] };
  }

  static async load(llama: Llama, file: string, opts: ReplicaOptions): Promise<SlmReplica> {
    const slots = opts.slots ?? DEFAULT_REPLICA_SLOTS;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`replica slots must be a positive integer, got ${slots}`);
    const { model, threads } = await loadModelFile(llama, file);
    const identity = { ...modelIdentity(model), weights: weightsFingerprint(file) };
    const replica = new SlmReplica(model, file, threads, identity, Math.min(opts.contextSize + 1, model.trainContextSize), slots);
    try {
      await replica.createSlots();
    } catch (err) {
      await replica.dispose();
      throw err;
    }
    return replica;
  }

  /**
   * Every slot's context, made and warmed up at start: a context costs ~65 ms to create and its first
   * decode tens more (measured on the Qwen-vocabulary fixture), which a stream would otherwise wait for.
   */
  private async createSlots(): Promise<void> {
    const warm = this.model.tokens.bos ?? 0;
    for (let i = 0; i < this.maxSlots; i++) {
      const slm = await LocalModel.onModel(this.model, this.file, this.threads, { contextSize: this.contextSize, hiddenState: true });
      this.slots.push({ slm, owner: null, busy: false, lastUsed: 0 });
      await slm.begin([warm], { top1Prob: true, topK: 0, hidden: true });
      await slm.clear();
    }
  }

  get hiddenSize(): number {
    return this.model.embeddingVectorSize;
  }

  /**
   * Stores a router network uploaded by `owner` (a router file's JSON without its training record);
   * resolves to its digest. It must have been made for this SLM.
   */
  upload(owner: string, body: Buffer, json: unknown): string {
    let router: LearnedRouter;
    try {
      const decoded = decodeRouterFile(json, "the uploaded router");
      router = LearnedRouter.fromFile(decoded, "uploaded router", { identity: this.identity, hiddenSize: this.hiddenSize });
    } catch (err) {
      if (err instanceof RouterFileError) throw new CloudError("bad_request", err.message);
      throw err;
    }
    const digest = createHash("sha256").update(body).digest("hex");
    const key = `${owner}|${digest}`;
    this.routers.delete(key);
    this.routers.set(key, router);
    while (this.routers.size > MAX_ROUTERS) this.routers.delete(this.routers.keys().next().value!);
    return digest;
  }

  /** The router a request names; throws no_replica for a network this owner has not uploaded (or that was dropped). */
  router(owner: string, spec: ReplicaRouter): Router {
    if (spec.kind === "confidence") return this.confidence;
    const key = `${owner}|${spec.digest}`;
    const r = this.routers.get(key);
    if (!r)
      throw new CloudError(
        "no_replica",
        `No router ${spec.digest.slice(0, 12)} was uploaded for this client (or it was dropped): upload it again`,
      );
    this.routers.delete(key); // most recently used goes last
    this.routers.set(key, r);
    return r;
  }

  /**
   * Starts following `session`: a slot positioned after `history` (its prefix cached from the
   * session's last stream when the slot is still the session's), or null when every slot is busy or
   * the history is longer than a slot holds.
   */
  async follow(
    session: string,
    history: readonly number[],
    router: Router,
    tau: number,
    sampling?: SamplingSettings,
  ): Promise<ReplicaRun | null> {
    if (this.disposed || history.length >= this.contextSize - 1) return null; // a history longer than a slot holds cannot be followed
    const slot = this.acquire(session);
    if (!slot) return null;
    // the device's SLM draws its tokens with the same settings, the same code (inference/sampling.ts)
    const needs = { ...router.needs, sampling };
    let step: SlmStep;
    try {
      step = await slot.slm.begin(history, needs);
    } catch (err) {
      slot.busy = false;
      throw err;
    }
    let released = false;
    return {
      capacity: slot.slm.contextSize - 1,
      // the device's decoder decides with the same function (shared/routing.ts)
      decide: (position) => ({ tokenId: step.tokenId, routes: decideStep(router, step, position, tau).toCloud }),
      advance: async (token) => {
        step = await slot.slm.advance(token, needs);
      },
      release: () => {
        if (released) return;
        released = true;
        slot.busy = false;
        slot.lastUsed = ++this.clock;
      },
    };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.slots) await s.slm.dispose().catch(() => {});
    this.slots.length = 0;
    await this.model.dispose();
  }

  /** The session's own free slot, else the free slot least recently used; null when all are busy. */
  private acquire(session: string): Slot | null {
    const free = this.slots.filter((s) => !s.busy);
    const slot = free.find((s) => s.owner === session) ?? free.sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (!slot) return null;
    slot.busy = true;
    slot.owner = session;
    return slot;
  }
}
