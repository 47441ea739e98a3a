/**
 * The models: loading the SLM (a file, an hf: URI or a catalogue download), the router chosen for it, learning
 * a distilled router from the user's answers (selfDistill.ts), and the inspector's candidates on the SLM.
 * A concern of the engine service (service.ts), over its shared state (engineState.ts).
 */
import path from "node:path";
import { defaultSlm, modelsForRole } from "../../models/catalogue.js";
import type { CatalogueItem, ModelStatus, OpArg, OpResult, StageStatus } from "../../shared/bridge.js";
import { resolveModelSource } from "../../inference/modelFile.js";
import { candidatesAt } from "./candidatesAt.js";
import { LocalModel } from "../../inference/localModel.js";
import { loadRouterFor } from "../../router/learnedRouter.js";
import { SelfDistiller } from "./selfDistill.js";
import { preflightModelFile } from "../../inference/modelPreflight.js";
import { errorMessage } from "../../shared/errors.js";
import { emptyStage, type EngineState } from "./engineState.js";
import type { CloudConnection } from "./cloudConnection.js";

export class Models {
  constructor(
    private readonly s: EngineState,
    private readonly connection: CloudConnection,
  ) {}

  async modelStatus(_arg: OpArg<"modelStatus"> = {}): Promise<ModelStatus> {
    return this.s.models;
  }

  async openLocalModel({ path: file }: OpArg<"openLocalModel">): Promise<ModelStatus> {
    if (this.s.active) throw new Error("Stop the current answer before changing the model");
    await this.useSlm(String(file));
    return this.s.models;
  }

  /** The file dialog is the desktop app's (its main process answers this); the engine has none. */
  async chooseLocalModel(_arg: OpArg<"chooseLocalModel"> = {}): Promise<ModelStatus | null> {
    throw new Error("Choosing a file needs the desktop app: type the model file's full path instead");
  }

  async catalogue(_arg: OpArg<"catalogue"> = {}): Promise<CatalogueItem[]> {
    return this.s.opts.catalogue ?? defaultCatalogue();
  }

  async downloadModel({ id }: OpArg<"downloadModel">): Promise<ModelStatus> {
    const item = (await this.catalogue()).find((c) => c.id === id);
    if (!item) throw new Error(`No model ${JSON.stringify(id)} in the catalogue`);
    if (this.s.downloads.status?.status === "downloading") throw new Error("A download is already running; cancel it first");
    // runs in the background: progress arrives as `models` events; the model is used once complete
    void this.s.downloads
      .download({ id: item.id, uri: item.uri, dir: this.modelsDir })
      .then((file) => {
        if (this.s.closed) return;
        this.s.adopting = (async () => {
          if (this.s.active) await this.s.stopActive();
          await this.useSlm(file);
        })().finally(() => (this.s.adopting = null));
        return this.s.adopting;
      })
      .catch(() => {}); // cancellations and failures are in the download state already
    return this.s.models;
  }

  /** The inspector's candidates for one token, on demand (candidatesAt.ts). */
  async candidates({ conversationId, messageId, index }: OpArg<"candidates">): Promise<OpResult<"candidates">> {
    await this.s.idle.cancel(); // the SLM has one sequence: the idle pre-slide gives way
    if (this.s.active || this.s.adopting) throw new Error("Candidates are computed once the answer has ended");
    if (!this.s.slm) throw new Error("The local model is not loaded yet");
    const run = candidatesAt(this.s.slm, this.s.store.get(String(conversationId)), String(messageId), Number(index));
    this.s.inspecting = run.catch(() => undefined);
    return { candidates: await run };
  }

  async cancelDownload(_arg: OpArg<"cancelDownload"> = {}): Promise<ModelStatus> {
    await this.s.downloads.cancel();
    return this.s.models;
  }

  private get modelsDir(): string {
    return this.s.opts.modelsDir ?? path.join(this.s.opts.dataDir, "models");
  }

  /** Loads `source` as the SLM, reconnects the cloud for its vocabulary, and remembers the choice. */
  private async useSlm(source: string): Promise<void> {
    await this.loadSlm(source);
    if (this.s.models.slm.error) return;
    this.s.persist({ slm: source });
    await this.s.saving; // remembered before the choice is reported done (close() waits for it too)
    if (this.s.slm && this.s.cloudSettings.kind !== "none") await this.connection.connectCloud();
  }

  private setSlmStage(stage: Partial<StageStatus>): void {
    this.s.models = { ...this.s.models, slm: { ...this.s.models.slm, ...stage } };
    this.s.emit({ type: "models", models: this.s.models });
  }

  async loadSlm(source: string): Promise<void> {
    this.setSlmStage({ ...emptyStage(source) });
    try {
      const file = await resolveModelSource(source, {
        directory: this.modelsDir,
        onProgress: ({ totalSize, downloadedSize }) => this.setSlmStage({ progress: totalSize ? downloadedSize / totalSize : null }),
      });
      // a truncated file or a model larger than memory: a clear error now, not a failed or endless load
      await preflightModelFile(file);
      const model = await LocalModel.load(file, {
        contextSize: this.s.contextChoice ?? "model",
        hiddenState: true, // free, and what a learned router reads
      });
      const old = this.s.slm;
      this.s.slm = model;
      await this.s.idle.cancel(); // the idle pre-slide may be using the old model
      await old?.dispose();
      if (!this.s.opts.router) await this.chooseRouter(model);
      this.setSlmStage({ loaded: true, name: model.identity.name, progress: null, error: null });
    } catch (err) {
      // keep the previous model, if any, working: a bad file picked from disk must not break the chat
      this.setSlmStage({ loaded: !!this.s.slm, error: errorMessage(err), progress: null, name: this.s.slm?.identity.name ?? null });
    }
  }

  private get routersDir(): string {
    return path.join(this.s.opts.dataDir, "routers");
  }

  /** A router file for this SLM (the repo's or one learned here), else the confidence router while learning one. */
  private async chooseRouter(model: LocalModel): Promise<void> {
    await this.s.distiller?.dispose();
    this.s.distiller = null;
    const choice = loadRouterFor(model, { extraDirs: [this.routersDir] });
    this.s.router = choice.router;
    if (choice.kind === "confidence" && this.s.opts.selfDistill !== false) {
      this.s.distiller = new SelfDistiller(model, { ...this.s.opts.selfDistill, dir: this.routersDir });
      this.s.router = this.s.distiller.router;
    }
    this.s.models = { ...this.s.models, router: this.s.router.name };
  }

  /** After an answer: trains the distilled router when enough is collected; uses it from the next answer. */
  async learnRouter(distiller: SelfDistiller): Promise<void> {
    const ev = await distiller.afterAnswer();
    if (!ev || distiller !== this.s.distiller || this.s.closed) return; // nothing due, or the SLM changed meanwhile
    if (ev.kind === "ready") {
      this.s.distiller = null;
      this.s.router = ev.router;
      this.s.models = { ...this.s.models, router: this.s.router.name };
      this.s.emit({ type: "models", models: this.s.models });
      this.s.notice(`The router now reads the SLM's hidden state instead of sorting its vocabulary for every token (${ev.description}).`);
    } else if (ev.kind === "failed") {
      this.s.notice(`Could not learn a faster router; the confidence router stays (${ev.error}).`);
    }
  }
}

const defaultSlmId = defaultSlm.id;

/** The catalogue's SLMs, smallest first; the catalogue's default SLM is the recommended one. */
export function defaultCatalogue(): CatalogueItem[] {
  return modelsForRole("slm")
    .map((m) => ({ id: m.id, name: m.name, sizeBytes: m.sizeBytes, uri: m.uri, recommended: m.id === defaultSlmId, license: m.license }))
    .sort((a, b) => a.sizeBytes - b.sizeBytes);
}
