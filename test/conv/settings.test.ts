/**
 * Settings that persist (settings.ts): atomic settings.json, the cloud token apart (0600 file, or
 * encrypted by a cipher shaped like Electron's safeStorage), a corrupt file set aside with a notice.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { presetConfig, SAMPLING_PRESETS } from "../../shared/sampling.js";
import {
  cipherSecretStore,
  relayedSecretStore,
  SETTINGS_FILE,
  SettingsStore,
  TOKEN_FILE,
  type SecretCipher,
} from "../../electron/engine/settings.js";
import { TandemService } from "../../electron/engine/service.js";
import { keychainKeeper } from "../../electron/engineSecrets.js";

const dir = () => mkdtempSync(path.join(tmpdir(), "tandem-settings-"));

describe("settings store", () => {
  it("saves every field and reads them back after a restart", async () => {
    const d = dir();
    const s = await SettingsStore.open(d);
    expect(s.get()).toEqual({});
    const all = {
      tau: 0.25,
      cloudKind: "tandem",
      cloudUrl: "http://h:1",
      theme: "dark",
      slm: "/m.gguf",
      contextSize: 4096,
      systemPrompt: "Be terse.",
      sampling: { ...SAMPLING_PRESETS.creative, preset: "creative", seed: 42 },
    } as const;
    await s.update(all);
    const again = await SettingsStore.open(d);
    expect(again.get()).toEqual(all);
    expect(again.notices).toEqual([]);
    expect(readFileSync(path.join(d, SETTINGS_FILE), "utf8")).not.toMatch(/token/i);
  });

  it("refuses an invalid value and changes nothing", async () => {
    const d = dir();
    const s = await SettingsStore.open(d);
    await s.update({ tau: 0.5 });
    await expect(s.update({ theme: "purple" as never, tau: 0.1 })).rejects.toThrow(/theme/);
    await expect(s.update({ contextSize: 3 })).rejects.toThrow(/contextSize/);
    await expect(s.update({ sampling: { ...presetConfig("balanced"), topP: 0 } })).rejects.toThrow(/sampling/);
    expect((await SettingsStore.open(d)).get()).toEqual({ tau: 0.5 });
  });

  it("sets a corrupt file aside with a notice and starts from the defaults", async () => {
    const d = dir();
    writeFileSync(path.join(d, SETTINGS_FILE), '{"tau": 0.3,');
    const s = await SettingsStore.open(d);
    expect(s.get()).toEqual({});
    expect(s.notices.join()).toMatch(/set aside as settings\.json\.corrupt-/);
    expect(readdirSync(d).some((f) => f.startsWith("settings.json.corrupt-"))).toBe(true);
    await s.update({ tau: 0.7 });
    expect((await SettingsStore.open(d)).get()).toEqual({ tau: 0.7 });
  });

  it("drops one invalid saved value with a notice, keeps the rest and fields of a later version", async () => {
    const d = dir();
    writeFileSync(path.join(d, SETTINGS_FILE), JSON.stringify({ tau: 7, theme: "light", futureThing: [1] }));
    const s = await SettingsStore.open(d);
    expect(s.get()).toEqual({ theme: "light" });
    expect(s.notices.join()).toMatch(/tau was invalid/);
    await s.update({ tau: 0.2 });
    expect(JSON.parse(readFileSync(path.join(d, SETTINGS_FILE), "utf8"))).toEqual({ futureThing: [1], theme: "light", tau: 0.2 });
  });

  it("keeps the token in a file only the user can read, and deletes it on empty", async () => {
    const d = dir();
    const s = await SettingsStore.open(d);
    expect(await s.secrets.read()).toBeNull();
    await s.secrets.write("secret-token-0123456789");
    const file = path.join(d, TOKEN_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await (await SettingsStore.open(d)).secrets.read()).toBe("secret-token-0123456789");
    await s.secrets.write("");
    expect(await s.secrets.read()).toBeNull();
  });

  it("with a safeStorage-shaped cipher, the file holds only ciphertext", async () => {
    const d = dir();
    // stands in for Electron's safeStorage (the OS keychain), which cannot run here: a reversible XOR
    const cipher: SecretCipher = {
      isEncryptionAvailable: () => true,
      encryptString: (p) => Buffer.from(Buffer.from(p, "utf8").map((b) => b ^ 0x5a)),
      decryptString: (e) => Buffer.from(e.map((b) => b ^ 0x5a)).toString("utf8"),
    };
    const file = path.join(d, "cloud-token.enc");
    const store = cipherSecretStore(file, cipher);
    expect(store.kind).toBe("keychain");
    await store.write("secret-token-0123456789");
    expect(readFileSync(file, "utf8")).not.toContain("secret");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await cipherSecretStore(file, cipher).read()).toBe("secret-token-0123456789");
    expect(cipherSecretStore(file, { ...cipher, isEncryptionAvailable: () => false }).kind).toBe("file");
  });
});

describe("the cloud token in the Electron app (the main process encrypts, the engine relays)", () => {
  // Electron's safeStorage cannot run here: a reversible XOR stands in at that edge only
  const cipher: SecretCipher = {
    isEncryptionAvailable: () => true,
    encryptString: (p) => Buffer.from(Buffer.from(p, "utf8").map((b) => b ^ 0x5a)),
    decryptString: (e) => Buffer.from(e.map((b) => b ^ 0x5a)).toString("utf8"),
  };

  it("the engine hands a new token to the main process and writes nothing itself; the next start gets it back", async () => {
    const d = dir();
    const keeper = (await keychainKeeper(d, cipher))!;
    expect(keeper.secret()).toEqual({ token: null });
    const sent: Promise<void>[] = [];
    const service = await TandemService.open({
      dataDir: d,
      cloud: undefined,
      secrets: relayedSecretStore(keeper.secret().token, (t) => sent.push(keeper.save(t))),
      selfDistill: false,
    });
    try {
      const status = await service.setCloudSettings({ kind: "tandem", url: "http://127.0.0.1:9", token: "relay-token-0123456789" });
      expect(status.hasToken).toBe(true);
      await service.close();
      await Promise.all(sent);
      const file = path.join(d, TOKEN_FILE);
      expect(readFileSync(file, "utf8")).not.toContain("relay-token");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      // a new main process (an app restart) decrypts it for the engine
      expect((await keychainKeeper(d, cipher))!.secret()).toEqual({ token: "relay-token-0123456789" });
      expect(keeper.secret()).toEqual({ token: "relay-token-0123456789" }); // and an engine restart in this one
    } finally {
      await service.close();
    }
  });

  it("without OS encryption there is no keeper: the engine keeps its own 0600 file", async () => {
    expect(await keychainKeeper(dir(), { ...cipher, isEncryptionAvailable: () => false })).toBeNull();
  });
});
