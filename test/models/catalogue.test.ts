/** The model catalogue: consistent entries, and URIs that node-llama-cpp resolves offline. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveModelFile } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { catalogue, defaultLlm, defaultSlm, findModel, modelsForRole } from "../../models/catalogue.js";

describe("model catalogue", () => {
  it("has unique ids, one vocabulary family and sane numbers", () => {
    expect(new Set(catalogue.map((m) => m.id)).size).toBe(catalogue.length);
    for (const m of catalogue) {
      expect(m.vocab).toBe("qwen2");
      expect(m.uri).toMatch(/^hf:Qwen\/Qwen2\.5-[\d.]+B-Instruct-GGUF\/qwen2\.5-[\d.]+b-instruct-(q8_0|q4_k_m)(-00001-of-0000\d)?\.gguf$/);
      expect(m.tagUri).toMatch(/^hf:Qwen\/Qwen2\.5-[\d.]+B-Instruct-GGUF:(Q8_0|Q4_K_M)$/);
      expect(m.uri.endsWith(m.parts > 1 ? `-00001-of-0000${m.parts}.gguf` : `${m.quant.toLowerCase()}.gguf`)).toBe(true);
      // Size roughly matches parameters x bits per weight (Q8_0 8.5, Q4_K_M ~4.9 plus embeddings).
      const bitsPerWeight = (m.sizeBytes * 8) / m.parameters;
      expect(bitsPerWeight).toBeGreaterThan(m.quant === "Q8_0" ? 8 : 4.5);
      expect(bitsPerWeight).toBeLessThan(m.quant === "Q8_0" ? 11.5 : 8.5);
      expect(m.sha256 === null || /^[0-9a-f]{64}$/.test(m.sha256)).toBe(true);
      expect(m.contextLength).toBe(32768);
    }
  });

  it("defaults: Qwen2.5-0.5B on the device, Qwen2.5-7B in the cloud", () => {
    expect(defaultSlm.role).toBe("slm");
    expect(defaultSlm.uri).toBe("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q8_0.gguf");
    expect(defaultLlm.role).toBe("llm");
    expect(defaultLlm.uri).toBe("hf:Qwen/Qwen2.5-7B-Instruct-GGUF/qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf");
    expect(findModel("qwen2.5-32b-instruct-q4_k_m")?.role).toBe("llm");
    expect(findModel("nope")).toBeUndefined();
    expect(modelsForRole("llm")[0]).toBe(defaultLlm);
    expect(modelsForRole("slm").every((m) => m.role === "slm")).toBe(true);
  });

  describe("URIs with node-llama-cpp, offline", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tandem-catalogue-"));
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("fail fast without download, naming the expected local file", async () => {
      for (const m of catalogue) {
        const file = m.uri.split("/").at(-1)!;
        await expect(resolveModelFile(m.uri, { directory: dir, download: false, cli: false })).rejects.toThrow(
          new RegExp(`No model file found at ".*hf_Qwen_${file.replace(/\./g, "\\.")}"`),
        );
      }
    });

    it("resolve to an already-downloaded file without any network access", async () => {
      const local = path.join(dir, `hf_Qwen_${defaultSlm.uri.split("/").at(-1)}`);
      fs.writeFileSync(local, "placeholder");
      expect(await resolveModelFile(defaultSlm.uri, { directory: dir, download: false, cli: false })).toBe(local);
    });
  });
});
