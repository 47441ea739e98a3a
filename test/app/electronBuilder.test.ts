/**
 * electron-builder.yml against electron-builder's own schema, offline (packaging itself needs a Mac):
 * app-builder-lib's getConfig + validateConfiguration reject an unknown or misspelled key.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/shared.js";

// app-builder-lib ships CommonJS without an ESM entry for these internals
const { getConfig, validateConfiguration } = (await import("app-builder-lib/out/util/config/config.js")) as typeof import("app-builder-lib/out/util/config/config.js");
const { DebugLogger } = await import("builder-util");

async function load(dir: string) {
  const config = await getConfig(dir, path.join(dir, "electron-builder.yml"), null);
  await validateConfiguration(config, new DebugLogger(false));
  return config;
}

describe("electron-builder.yml", () => {
  it("is valid and builds a macOS arm64 dmg with the hardened runtime and llama.cpp unpacked from asar", async () => {
    const c = await load(repoRoot);
    expect(c.mac?.hardenedRuntime).toBe(true);
    expect(c.mac?.target).toEqual([{ target: "dmg", arch: ["arm64"] }]);
    expect(c.asarUnpack).toEqual(expect.arrayContaining(["node_modules/node-llama-cpp/bins/**", "node_modules/@node-llama-cpp/**", "node_modules/node-llama-cpp/llama/localBuilds/**"]));
    const ent = readFileSync(path.join(repoRoot, c.mac!.entitlements!), "utf8");
    for (const k of ["com.apple.security.cs.allow-jit", "com.apple.security.network.client", "com.apple.security.cs.disable-library-validation"]) expect(ent).toContain(k);
  });

  it("the validation is real: a misspelled key is rejected", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tandem-eb-"));
    copyFileSync(path.join(repoRoot, "package.json"), path.join(dir, "package.json"));
    writeFileSync(path.join(dir, "electron-builder.yml"), readFileSync(path.join(repoRoot, "electron-builder.yml"), "utf8").replace("hardenedRuntime:", "hardenedRuntim:"));
    await expect(load(dir)).rejects.toThrow(/does not match the API schema[\s\S]*configuration\.mac/);
  });
});
