/**
 * electron-builder.yml against electron-builder's own schema, offline (packaging itself needs a Mac):
 * app-builder-lib's getConfig + validateConfiguration reject an unknown or misspelled key.
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/shared.js";

// app-builder-lib ships CommonJS without an ESM entry for these internals
const { getConfig, validateConfiguration } =
  (await import("app-builder-lib/out/util/config/config.js")) as typeof import("app-builder-lib/out/util/config/config.js");
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
    expect(c.asarUnpack).toEqual(
      expect.arrayContaining([
        "node_modules/node-llama-cpp/bins/**",
        "node_modules/@node-llama-cpp/**",
        "node_modules/node-llama-cpp/llama/localBuilds/**",
      ]),
    );
    const ent = readFileSync(path.join(repoRoot, c.mac!.entitlements!), "utf8");
    for (const k of [
      "com.apple.security.cs.allow-jit",
      "com.apple.security.network.client",
      "com.apple.security.cs.disable-library-validation",
    ])
      expect(ent).toContain(k);
  });

  it("flips Electron's fuses, ships no source maps, and has an icon", async () => {
    const c = await load(repoRoot);
    expect(c.electronFuses).toEqual({
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableCookieEncryption: true,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
      grantFileProtocolExtraPrivileges: false,
    });
    expect(JSON.stringify(c.files)).toContain(JSON.stringify("!**/*.map"));
    expect(c.productName).toBe("Tandem");
    const icon = readFileSync(path.join(repoRoot, c.mac!.icon!));
    expect(icon.subarray(0, 4).toString("latin1")).toBe("icns");
    expect(icon.readUInt32BE(4)).toBe(icon.length);
    expect(icon.includes(Buffer.from("ic10"))).toBe(true); // the 1024 px entry
  });

  it("packs no renderer-only package: they are devDependencies, bundled into dist/renderer by Vite", () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
      productName: string;
      engines: { node: string };
    };
    for (const name of ["react", "react-dom", "react-markdown", "katex", "zustand", "rehype-katex", "remark-gfm"])
      expect(pkg.dependencies, name).not.toHaveProperty(name);
    expect(Object.keys(pkg.dependencies)).toContain("node-llama-cpp");
    // `npm start` runs Electron on the project: the app's name (and so its data folder) is the package's
    expect(pkg.productName).toBe("Tandem");
    expect(pkg.engines.node).toBe(">=22.12");
    expect(readFileSync(path.join(repoRoot, ".nvmrc"), "utf8").trim()).toMatch(/^22\.(1[2-9]|[2-9]\d)/);
    const sources = (dir: string): string[] =>
      readdirSync(path.join(repoRoot, dir))
        .filter((f) => f.endsWith(".ts"))
        .map((f) => readFileSync(path.join(repoRoot, dir, f), "utf8"));
    // nothing the main process or the engine bundles imports them
    for (const src of [...sources("electron"), ...sources("electron/engine"), ...sources("shared")])
      expect(src).not.toMatch(/from "(react|react-dom|katex|zustand|react-markdown)"/);
  });

  it("the validation is real: a misspelled key is rejected", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tandem-eb-"));
    copyFileSync(path.join(repoRoot, "package.json"), path.join(dir, "package.json"));
    writeFileSync(
      path.join(dir, "electron-builder.yml"),
      readFileSync(path.join(repoRoot, "electron-builder.yml"), "utf8").replace("hardenedRuntime:", "hardenedRuntim:"),
    );
    await expect(load(dir)).rejects.toThrow(/does not match the API schema[\s\S]*configuration\.mac/);
  });
});
