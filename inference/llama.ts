/**
 * One llama.cpp runtime per process, shared by the device engine and the cloud server.
 * Metal on Apple Silicon, CPU elsewhere: these Linux machines have no GPU, and `gpu: "auto"` there
 * would go looking for CUDA/Vulkan builds that are not installed.
 */
import { getLlama, type Llama } from "node-llama-cpp";

let llamaPromise: Promise<Llama> | undefined;

export function defaultGpu(): "auto" | false {
  const env = process.env.TANDEM_GPU;
  if (env === "0" || env === "false" || env === "cpu") return false;
  if (env === "auto") return "auto";
  return process.platform === "darwin" && process.arch === "arm64" ? "auto" : false;
}

export function getTandemLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({
    gpu: defaultGpu(),
    // never compile or download a binary at run time: the prebuilt binaries ship in node_modules
    build: "never",
    logLevel: "error" as never, // LlamaLogLevel is an enum whose string values the typings hide
    progressLogs: false,
  });
  return llamaPromise;
}

/**
 * Threads for a context. Tiny models must run on one thread on these 2-core machines (docs/FACTS.md: 2-4
 * threads made a 300K-parameter model 200x slower); larger ones use node-llama-cpp's default.
 * TANDEM_THREADS overrides.
 */
export function threadsFor(modelBytes: number): number | undefined {
  const env = Number(process.env.TANDEM_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return modelBytes < 64 * 1024 * 1024 ? 1 : undefined;
}
