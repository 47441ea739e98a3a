/**
 * The learned router (CITER-style MLP) behind shared/router.ts's Router interface, and the selection
 * the engine and the app make: the learned router when a router file matches the loaded SLM, the
 * confidence router otherwise.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelIdentity } from "../shared/protocol.js";
import { clampConfidence, ConfidenceRouter, type FeatureNeeds, type Router, type RouterFeatures } from "../shared/router.js";
import { featureDim, featureNeeds, featureSpecName, featureVector, type FeatureSpec } from "./features.js";
import {
  bindingOf,
  decodeRouterFile,
  encodeRouterFile,
  describeFidelity,
  isDistilled,
  readRouterFileJson,
  RouterFileError,
  RouterMismatchError,
  ROUTER_FILE_SUFFIX,
  sameBinding,
  type RouterFileJson,
  type SlmBinding,
} from "./file.js";
import { mlpLogit, sigmoid, type MlpParams } from "./mlp.js";

export class LearnedRouter implements Router {
  readonly name: string;
  readonly needs: FeatureNeeds;
  private readonly scratch: Float32Array;

  constructor(
    readonly params: MlpParams,
    readonly features: FeatureSpec,
    readonly slm: SlmBinding,
    readonly file: string | null = null,
    /** trained on the LLM's preferences, or distilled from the SLM's own confidence (router/training/distill.ts) */
    readonly kind: "learned" | "distilled" = "learned",
  ) {
    const d = featureDim(features, slm.hiddenSize);
    if (params.sizes[0] !== d)
      throw new RouterFileError(`Router network takes ${params.sizes[0]} inputs but its features (${featureSpecName(features)}) make ${d}`);
    this.needs = featureNeeds(features);
    this.scratch = new Float32Array(d);
    this.name = `${kind === "distilled" ? "distilled confidence" : "learned"} (MLP ${params.sizes.join("→")} on ${featureSpecName(features)}${file ? `, ${path.basename(file)}` : ""})`;
  }

  /** the network alone, for a cloud's SLM replica to run the same router (Router.replica) */
  readonly replica = {
    kind: "mlp" as const,
    network: (): unknown => encodeRouterFile({ slm: this.slm, features: this.features, params: this.params }),
  };

  score(f: RouterFeatures): number {
    return clampConfidence(sigmoid(mlpLogit(this.params, featureVector(f, this.features, this.slm.hiddenSize, this.scratch))));
  }

  /** Score of an already-built feature vector (labels store vectors; used to pick τ for a share). */
  scoreVector(v: ArrayLike<number>): number {
    return clampConfidence(sigmoid(mlpLogit(this.params, v)));
  }

  /** Loads a router file for `slm`; throws RouterMismatchError when it was trained on another model. */
  static load(file: string, slm: { identity: ModelIdentity; hiddenSize: number }): LearnedRouter {
    return LearnedRouter.fromFile(decodeRouterFile(readRouterFileJson(file), file), file, slm);
  }

  /** The router of an already read and decoded file (see load). */
  static fromFile(
    decoded: { json: RouterFileJson; params: MlpParams },
    file: string,
    slm: { identity: ModelIdentity; hiddenSize: number },
  ): LearnedRouter {
    const { json, params } = decoded;
    const want = bindingOf(slm);
    if (!sameBinding(json.slm, want)) throw new RouterMismatchError(file, want, json.slm);
    return new LearnedRouter(params, json.features, want, file, isDistilled(json) ? "distilled" : "learned");
  }
}

/** Where trained routers live by default: $TANDEM_ROUTER_DIR, else <repo>/router/trained. */
export function defaultRouterDir(): string {
  if (process.env.TANDEM_ROUTER_DIR) return path.resolve(process.env.TANDEM_ROUTER_DIR);
  return path.join(path.dirname(fileURLToPath(import.meta.url)), "trained");
}

export interface RouterChoice {
  router: Router;
  /** learned: trained on the LLM's preferences; distilled: predicts the SLM's own confidence from its hidden state */
  kind: "learned" | "distilled" | "confidence";
  /** one line for the CLI / UI: which router is active and why */
  description: string;
}

/**
 * The router for this SLM. With `file`, that router file must match (a mismatch throws: the user asked
 * for it). Otherwise every *.router.json in `dir` (and `extraDirs`, e.g. the app's data folder) is
 * tried; files for other models are skipped. Preference: a learned router (it knows the LLM), then a
 * distilled one (the confidence router's decisions without its full-vocabulary cost), then the
 * confidence router itself.
 */
export function loadRouterFor(
  slm: { identity: ModelIdentity; hiddenSize: number },
  opts: { file?: string; dir?: string; extraDirs?: readonly string[] } = {},
): RouterChoice {
  if (opts.file) {
    const router = LearnedRouter.load(opts.file, slm);
    return { router, kind: router.kind, description: `router: ${router.name}` };
  }
  const dirs = [opts.dir ?? defaultRouterDir(), ...(opts.extraDirs ?? [])];
  const files = dirs.flatMap((dir) =>
    fs.existsSync(dir)
      ? fs
          .readdirSync(dir)
          .filter((f) => f.endsWith(ROUTER_FILE_SUFFIX))
          .sort()
          .map((f) => path.join(dir, f))
      : [],
  );
  let distilled: { router: LearnedRouter; json: RouterFileJson } | null = null;
  for (const full of files) {
    try {
      const decoded = decodeRouterFile(readRouterFileJson(full), full);
      const { json } = decoded;
      if (!sameBinding(json.slm, bindingOf(slm))) continue;
      const router = LearnedRouter.fromFile(decoded, full, slm);
      if (!isDistilled(json)) return { router, kind: "learned", description: `router: ${router.name}` };
      distilled ??= { router, json };
    } catch {
      // an unreadable or foreign file is skipped: another may match, and the confidence router always works
    }
  }
  if (distilled) {
    const fid = distilled.json.training?.fidelity;
    const how = fid ? ` — stands in for the confidence router (${describeFidelity(fid)})` : "";
    return { router: distilled.router, kind: "distilled", description: `router: ${distilled.router.name}${how}` };
  }
  const router = new ConfidenceRouter();
  const where = dirs.join(", ");
  const why = files.length === 0 ? `no learned or distilled router in ${where}` : `no router in ${where} matches ${slm.identity.name}`;
  return { router, kind: "confidence", description: `router: ${router.name} — ${why}` };
}

export type { RouterFileJson };
