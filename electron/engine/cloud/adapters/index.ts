/** Picks the cloud peer for a configured cloud: Tandem's own token server or an existing engine. */
import { TandemCloudClient, type TandemClientOptions } from "../tandemClient.js";
import type { CloudPeer } from "../peer.js";
import type { AdapterOptions } from "./base.js";
import { LlamaCppServerPeer } from "./llamaCppServer.js";
import { SglangPeer } from "./sglang.js";
import { VllmPeer } from "./vllm.js";

import { CLOUD_KINDS, type CloudKind } from "../../../../shared/bridge.js";

export { CLOUD_KINDS, type CloudKind };

export type CreateCloudPeerOptions =
  | ({ kind: "tandem" } & TandemClientOptions)
  | ({ kind: "llama.cpp"; slot?: number } & AdapterOptions)
  | ({ kind: "vllm"; model?: string } & AdapterOptions)
  | ({ kind: "sglang" } & AdapterOptions);

export function createCloudPeer(opts: CreateCloudPeerOptions): CloudPeer {
  switch (opts.kind) {
    case "tandem":
      return new TandemCloudClient(opts);
    case "llama.cpp":
      return new LlamaCppServerPeer(opts);
    case "vllm":
      return new VllmPeer(opts);
    case "sglang":
      return new SglangPeer(opts);
    default: {
      const k: never = opts;
      throw new Error(`Unknown cloud kind ${JSON.stringify((k as { kind: unknown }).kind)}; expected one of ${CLOUD_KINDS.join(", ")}`);
    }
  }
}

export { LlamaCppServerPeer, VllmPeer, SglangPeer };
export { vocabularyProbe, PROBE_TEXT, type VocabularyProbe, type AdapterOptions } from "./base.js";
