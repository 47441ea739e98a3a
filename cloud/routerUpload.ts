/**
 * POST /v1/sessions/:id/router, checked before the replica keeps it: every field type-checked
 * (RouterUploadSchema), the network decoded and bound to the replica's SLM the way the replica will,
 * and one step scored with every feature present. A malformed upload (weights null, a number where an
 * array belongs, a missing field) is a 400 with a short message, never a 500; one that passes cannot
 * then fail in the middle of a /route stream for what it is.
 */
import type { ModelIdentity } from "../shared/protocol.js";
import { LearnedRouter } from "../router/learnedRouter.js";
import { decodeRouterFile, RouterFileError } from "../router/file.js";
import { CloudError } from "./errors.js";
import { parseRouterUpload } from "./validate.js";
import { errorMessage } from "../shared/errors.js";

export function checkRouterUpload(json: unknown, slm: { identity: ModelIdentity; hiddenSize: number }): void {
  const upload = parseRouterUpload(json);
  let router: LearnedRouter;
  try {
    router = LearnedRouter.fromFile(decodeRouterFile(upload, "the uploaded router"), "uploaded router", slm);
  } catch (err) {
    if (err instanceof RouterFileError) throw new CloudError("bad_request", err.message);
    throw new CloudError("bad_request", `The uploaded router cannot be built: ${errorMessage(err)}`);
  }
  // every feature a replica step can give, at its largest: what a stream will ask of the router
  const k = Math.max(2, upload.features.topK);
  try {
    router.score({
      top1Prob: 0.5,
      topProbs: Array.from({ length: k }, (_, i) => 0.5 / (i + 1)),
      hidden: new Float32Array(slm.hiddenSize),
      position: 0,
    });
  } catch (err) {
    throw new CloudError("bad_request", `The uploaded router cannot score a step: ${errorMessage(err)}`);
  }
}
