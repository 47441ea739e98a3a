/**
 * The cloud connection: its settings (checked, saved), its status, connecting the client for the SLM's vocabulary.
 * A concern of the engine service (service.ts), over its shared state (engineState.ts).
 */
import type { CloudStatus, OpArg } from "../../shared/bridge.js";
import { VocabularyMismatchError } from "../../inference/modelFile.js";
import { CloudCallError } from "./cloud/peer.js";
import { TandemCloudClient } from "./cloud/tandemClient.js";
import { authFailure, checkCloudSettings, sameServer } from "./cloudSettings.js";
import { errorMessage } from "../../shared/errors.js";
import type { EngineState } from "./engineState.js";
import { cheapOnVocabulary } from "./inspectorCost.js";

export class CloudConnection {
  constructor(private readonly s: EngineState) {}

  async cloudStatus(_arg: OpArg<"cloudStatus"> = {}): Promise<CloudStatus> {
    return this.s.cloudStatusValue;
  }

  /**
   * Settings that cannot work (not a URL, not http(s), a malformed or too short token) are refused with
   * a clear error and change nothing; settings that fail to connect (unreachable, token refused, another
   * vocabulary) are kept, and the cloud status says why it is offline.
   */
  async setCloudSettings(s: OpArg<"setCloudSettings">): Promise<CloudStatus> {
    if (s.kind !== "tandem" && s.kind !== "none") throw new Error(`Unknown cloud kind ${JSON.stringify(s.kind)}`);
    if (this.s.active) throw new Error("Stop the current answer before changing the cloud");
    const url = String(s.url ?? "").trim();
    // an empty token field keeps the saved token (the UI never receives it back), but only for the same
    // server: a token is never sent to another host because the field was left empty
    const kept = sameServer(url, this.s.cloudSettings.url) ? this.s.cloudSettings.token : "";
    const token = s.token ? String(s.token) : kept;
    if (s.kind === "none") this.s.cloudSettings = { kind: "none", url, token };
    else this.s.cloudSettings = { kind: "tandem", ...checkCloudSettings({ url, token }) };
    const saved = this.s.cloudSettings;
    this.s.persist({ cloudKind: saved.kind, cloudUrl: saved.url }, async () => {
      if ((await this.s.settings.secrets.read().catch(() => null)) !== (saved.token || null))
        await this.s.settings.secrets.write(saved.token);
    });
    await this.connectCloud();
    return this.s.cloudStatusValue;
  }

  private setCloudStatus(state: CloudStatus["state"], detail: string | null, model: string | null = null): void {
    this.s.cloudStatusValue = this.s.statusFromSettings(state, detail, model);
    this.s.emit({ type: "cloud", cloud: this.s.cloudStatusValue });
  }

  async connectCloud(): Promise<void> {
    const old = this.s.cloud;
    this.s.cloud = null;
    await old?.close();
    const s = this.s.cloudSettings;
    if (s.kind === "none" || !s.url) return this.setCloudStatus("disabled", s.kind === "none" ? null : "no URL set");
    let checked: { url: string; token: string };
    try {
      // settings from the command line or the environment reach here unchecked
      checked = checkCloudSettings(s);
    } catch (err) {
      return this.setCloudStatus("offline", errorMessage(err));
    }
    if (!this.s.slm) return this.setCloudStatus("offline", "the local model is not loaded");
    let client: TandemCloudClient;
    try {
      client = new TandemCloudClient({
        url: checked.url,
        token: checked.token || undefined,
        deadlineMs: this.s.opts.deadlineMs,
        // the cloud token's log-probability for the inspector, where it does not cost the server a
        // full-vocabulary sort per call that bounds how many users it serves (NextRequest.logprob)
        logprob: cheapOnVocabulary(this.s.slm.vocabSize),
        onStateChange: (state, detail) => {
          if (this.s.cloud !== client) return; // a replaced client's late news
          this.setCloudStatus(state === "unknown" ? "connecting" : state, detail ?? null, client.model?.name ?? null);
        },
      });
    } catch (err) {
      return this.setCloudStatus("offline", errorMessage(err));
    }
    this.s.cloud = client;
    this.setCloudStatus("connecting", null);
    try {
      const m = await client.connect(this.s.slm.identity);
      // shown beside the model: with a replica of this SLM the cloud answers whole routed stretches
      this.setCloudStatus(
        "online",
        client.replicated
          ? "the server follows this device's routed decoding (a replica of its SLM): one round trip per stretch of cloud tokens"
          : null,
        m.name,
      );
    } catch (err) {
      const refused = authFailure(err, checked.url, !!checked.token);
      if (refused || err instanceof VocabularyMismatchError || (err instanceof CloudCallError && err.reason === "vocab_mismatch")) {
        // a different vocabulary can never work token by token, and a refused token does not start
        // working by retrying: drop this cloud (no call per routed token into a wall), keep chatting locally
        this.s.cloud = null;
        await client.close();
      }
      this.setCloudStatus("offline", refused ?? errorMessage(err));
    }
  }
}
