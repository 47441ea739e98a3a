/**
 * The routing decision, defined once: the features of one SLM step and the decision on them (cloud or
 * local, with the router's score). Used by the device's decoder, the cloud's replica of it, label
 * collection and training, and eval — so a router reads the same features wherever it runs, and the
 * replica decides as the device does (a replica that read fewer features than the device once
 * decided differently with a learned router). No Node or native imports: any process may use it.
 */
import { routesToCloud, type Router, type RouterFeatures } from "./router.js";

/** What routers read of an SLM step (inference/localModel.ts's SlmStep has these fields). */
export interface StepView {
  /** probability of the greedy token; NaN when not computed */
  top1Prob: number;
  /** top candidates, highest first, when computed */
  top?: readonly { prob: number }[];
  /** the SLM's last hidden state, when computed */
  hidden?: Float32Array | Float64Array;
}

/** The router's features of `step` at answer position `position` (0 = the answer's first token). */
export function stepFeatures(step: StepView, position: number): RouterFeatures {
  return { top1Prob: step.top1Prob, topProbs: step.top?.map((c) => c.prob), hidden: step.hidden, position };
}

/**
 * The same features as a copy that may be kept (labels, eval): the hidden state goes to float32, which
 * is what a learned router reads anyway (router/features.ts featureVector), and the native buffer may be reused.
 */
export function keptFeatures(step: StepView, position: number): RouterFeatures {
  const f = stepFeatures(step, position);
  return step.hidden ? { ...f, hidden: Float32Array.from(step.hidden) } : f;
}

export interface RoutingDecision {
  /** the router's score: its confidence that the SLM's token is acceptable */
  confidence: number;
  /** the threshold it was compared with */
  tau: number;
  /** confidence < τ: the position goes to the cloud */
  toCloud: boolean;
}

/** The decision on features already built (labels and eval keep features, not steps). */
export function decide(router: Router, features: RouterFeatures, tau: number): RoutingDecision {
  const confidence = router.score(features);
  return { confidence, tau, toCloud: routesToCloud(confidence, tau) };
}

/** The decision at one step of the SLM: what the device's decoder and the cloud's replica both call. */
export function decideStep(router: Router, step: StepView, position: number, tau: number): RoutingDecision {
  return decide(router, stepFeatures(step, position), tau);
}
