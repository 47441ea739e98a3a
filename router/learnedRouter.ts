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
  ) {
    const d = featureDim(features, slm.hiddenSize);
    if (params.sizes[0] !== d) throw new RouterFileError(`Router network takes ${params.sizes[0]} inputs but its features (${featureSpecName(features)}) make ${d}`);
    this.needs = featureNeeds(features);
    this.scratch = new Float32Array(d);
    this.name = `learned (MLP ${params.sizes.join("→")} on ${featureSpecName(features)}${file ? `, ${path.basename(file)}` : ""})`;
  }

  score(f: RouterFeatures): number {
    return clampConfidence(sigmoid(mlpLogit(this.params, featureVector(f, this.features, this.slm.hiddenSize, this.scratch))));
  }

  /** Score of an already-built feature vector (labels store vectors; used to pick τ for a share). */
  scoreVector(v: ArrayLike<number>): number {
    return clampConfidence(sigmoid(mlpLogit(this.params, v)));
  }

  /** Loads a router file for `slm`; throws RouterMismatchError when it was trained on another model. */
  static load(file: string, slm: { identity: ModelIdentity; hiddenSize: number }): LearnedRouter {
    const { json, params } = decodeRouterFile(readRouterFileJson(file), file);
    const want = bindingOf(slm);
    if (!sameBinding(json.slm, want)) throw new RouterMismatchError(file, want, json.slm);
    return new LearnedRouter(params, json.features, want, file);
  }
}

/** Where trained routers live by default: $TANDEM_ROUTER_DIR, else <repo>/router/trained. */
export function defaultRouterDir(): string {
  if (process.env.TANDEM_ROUTER_DIR) return path.resolve(process.env.TANDEM_ROUTER_DIR);
  return path.join(path.dirname(fileURLToPath(import.meta.url)), "trained");
}

export interface RouterChoice {
  router: Router;
  kind: "learned" | "confidence";
  /** one line for the CLI / UI: which router is active and why */
  description: string;
}

/**
 * The router for this SLM. With `file`, that router file must match (a mismatch throws: the user asked
 * for it). Otherwise every *.router.json in `dir` is tried and the first that matches is used; files
 * for other models are skipped; with none, the confidence router.
 */
export function loadRouterFor(
  slm: { identity: ModelIdentity; hiddenSize: number },
  opts: { file?: string; dir?: string } = {},
): RouterChoice {
  if (opts.file) {
    const router = LearnedRouter.load(opts.file, slm);
    return { router, kind: "learned", description: `router: ${router.name}` };
  }
  const dir = opts.dir ?? defaultRouterDir();
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(ROUTER_FILE_SUFFIX)).sort() : [];
  const skipped: string[] = [];
  for (const f of files) {
    const full = path.join(dir, f);
    try {
      const { json } = decodeRouterFile(readRouterFileJson(full), full);
      if (!sameBinding(json.slm, bindingOf(slm))) {
        skipped.push(f);
        continue;
      }
      const router = LearnedRouter.load(full, slm);
      return { router, kind: "learned", description: `router: ${router.name}` };
    } catch (e) {
      skipped.push(`${f} (${(e as Error).message})`);
    }
  }
  const router = new ConfidenceRouter();
  const why = files.length === 0 ? `no learned router in ${dir}` : `no learned router in ${dir} matches ${slm.identity.name}`;
  return { router, kind: "confidence", description: `router: ${router.name} — ${why}` };
}

export type { RouterFileJson };
