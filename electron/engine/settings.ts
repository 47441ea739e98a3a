/**
 * The app's settings, kept in the data folder so they survive a restart: τ, the cloud (kind, URL;
 * its token apart, see `SecretStore`), the theme, the model, the context size and the default system
 * prompt. `settings.json` is replaced atomically; a file that cannot be read as settings is set aside
 * (renamed `settings.json.corrupt-<time>`) with a notice, and a single invalid value is dropped with
 * a notice, never fatal. Values given on the command line override saved ones for that run only
 * (the service decides; see `ServiceOptions`).
 *
 * The cloud token never goes into settings.json. In browser mode it is a file of its own readable by
 * the user only (mode 0600, `fileSecretStore`); in the Electron app the main process can keep it
 * encrypted by the OS keychain instead: pass `cipherSecretStore(file, safeStorage)` (Electron's
 * `safeStorage` has exactly the `SecretCipher` shape) as `ServiceOptions.secrets`.
 */
import { chmod, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import type { AppSettings } from "../../shared/bridge.js";
import { writeFileAtomic } from "./atomicFile.js";
import { errorMessage } from "../../shared/errors.js";
import { samplingConfigSchema } from "../../shared/sampling.js";

export const SETTINGS_FILE = "settings.json";
export const TOKEN_FILE = "cloud-token";
/** settings.json is small; anything larger is not ours */
const MAX_SETTINGS_BYTES = 1 << 20;
export const MAX_SYSTEM_PROMPT_CHARS = 100_000;
export const MIN_CONTEXT_SIZE = 256;
export const MAX_CONTEXT_SIZE = 1 << 20;

/** One schema per field: a bad value loses only itself. */
const FIELDS = {
  tau: z.number().min(0).max(1),
  cloudKind: z.enum(["tandem", "none"]),
  cloudUrl: z.string().max(2048),
  theme: z.enum(["system", "light", "dark"]),
  slm: z.string().min(1).max(4096),
  contextSize: z.number().int().min(MIN_CONTEXT_SIZE).max(MAX_CONTEXT_SIZE).nullable(),
  systemPrompt: z.string().max(MAX_SYSTEM_PROMPT_CHARS),
  sampling: samplingConfigSchema,
} satisfies { [K in keyof AppSettings]-?: z.ZodType };

/** Where the cloud token is kept. */
export interface SecretStore {
  /** how it is kept, for the README and notices */
  readonly kind: "file" | "keychain";
  read(): Promise<string | null>;
  /** "" deletes it */
  write(secret: string): Promise<void>;
}

/** The token in a file only the user can read (mode 0600), beside settings.json. */
export function fileSecretStore(file: string): SecretStore {
  return {
    kind: "file",
    async read() {
      const s = await readOrNull(file);
      return s === null ? null : s.toString("utf8").trim() || null;
    },
    async write(secret) {
      if (!secret) return void (await unlink(file).catch(() => {}));
      await writeFileAtomic(file, secret);
      await chmod(file, 0o600); // created 0600 already; an older file keeps the mode it had otherwise
    },
  };
}

/** Electron's `safeStorage` (the macOS keychain, DPAPI, libsecret): the shape this module needs of it. */
export interface SecretCipher {
  isEncryptionAvailable(): boolean;
  encryptString(plain: string): Buffer;
  decryptString(encrypted: Buffer): string;
}

/** The token encrypted by the OS (Electron `safeStorage`), in a 0600 file; plain file storage if the OS offers none. */
export function cipherSecretStore(file: string, cipher: SecretCipher): SecretStore {
  if (!cipher.isEncryptionAvailable()) return fileSecretStore(file);
  return {
    kind: "keychain",
    async read() {
      const b = await readOrNull(file);
      if (!b || b.length === 0) return null;
      try {
        return cipher.decryptString(Buffer.from(b.toString("utf8"), "base64")) || null;
      } catch {
        return null; // encrypted by another user or machine: as if none was saved
      }
    },
    async write(secret) {
      if (!secret) return void (await unlink(file).catch(() => {}));
      // writeFileAtomic takes text: the ciphertext goes as base64 inside, decoded on read
      await writeFileAtomic(file, cipher.encryptString(secret).toString("base64"));
      await chmod(file, 0o600);
    },
  };
}

/**
 * The token as the Electron app's engine keeps it: the engine runs in a utility process, which has no
 * `safeStorage`, so the main process decrypts the token and hands it over at start (`initial`), and
 * every change goes back to the main process (`save`) to be encrypted there (electron/engineSecrets.ts).
 * The engine never writes the token to disk itself.
 */
export function relayedSecretStore(initial: string | null, save: (secret: string) => void): SecretStore {
  let current = initial || null;
  return {
    kind: "keychain",
    async read() {
      return current;
    },
    async write(secret) {
      current = secret || null;
      save(secret);
    },
  };
}

async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

export class SettingsStore {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(
    private readonly file: string,
    private values: AppSettings,
    /** fields this version does not know (a later version's): kept as they are at every save */
    private readonly unknown: Record<string, unknown>,
    readonly secrets: SecretStore,
    /** what went wrong reading the file (set aside, values dropped), for the UI */
    readonly notices: string[],
  ) {}

  static async open(dataDir: string, secrets?: SecretStore): Promise<SettingsStore> {
    const file = path.join(dataDir, SETTINGS_FILE);
    const notices: string[] = [];
    const { values, unknown } = await readSettings(file, notices);
    return new SettingsStore(file, values, unknown, secrets ?? fileSecretStore(path.join(dataDir, TOKEN_FILE)), notices);
  }

  get(): AppSettings {
    return { ...this.values };
  }

  /**
   * Validates every given field first (nothing changes if one is invalid), then saves atomically.
   * Updates are applied one after another, each over the last (no update is lost to another).
   */
  update(patch: Partial<AppSettings>): Promise<AppSettings> {
    const checked: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      const schema = Object.hasOwn(FIELDS, key) ? FIELDS[key as keyof AppSettings] : undefined;
      if (!schema) return Promise.reject(new Error(`Unknown setting ${JSON.stringify(key)}`));
      const r = schema.safeParse(value);
      if (!r.success) return Promise.reject(new Error(`Invalid ${key}: ${r.error.issues[0]?.message ?? "bad value"}`));
      checked[key] = r.data;
    }
    const run = this.queue.then(async () => {
      const next = { ...this.values, ...checked } as AppSettings;
      await writeFileAtomic(this.file, JSON.stringify({ ...this.unknown, ...next }, null, 2));
      this.values = next;
      return this.get();
    });
    this.queue = run.catch(() => {});
    return run;
  }
}

async function readSettings(file: string, notices: string[]): Promise<{ values: AppSettings; unknown: Record<string, unknown> }> {
  const none = { values: {}, unknown: {} };
  let raw: Buffer | null;
  try {
    raw = await readOrNull(file);
  } catch (err) {
    notices.push(`Could not read the settings (${errorMessage(err)}); using the defaults.`);
    return none;
  }
  if (raw === null) return none;
  let parsed: unknown;
  try {
    if (raw.length > MAX_SETTINGS_BYTES) throw new Error(`${raw.length} bytes`);
    parsed = JSON.parse(raw.toString("utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
  } catch (err) {
    const aside = `${file}.corrupt-${Date.now()}`;
    await rename(file, aside).catch(() => {});
    notices.push(
      `The settings file could not be read (${errorMessage(err)}); it was set aside as ${path.basename(aside)} and the defaults are used.`,
    );
    return none;
  }
  const values: Record<string, unknown> = {};
  const unknown: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    const schema = Object.hasOwn(FIELDS, key) ? FIELDS[key as keyof AppSettings] : undefined;
    if (!schema) {
      unknown[key] = value;
      continue;
    }
    const r = schema.safeParse(value);
    if (r.success) values[key] = r.data;
    else notices.push(`The saved setting ${key} was invalid and is ignored.`);
  }
  return { values: values as AppSettings, unknown };
}
