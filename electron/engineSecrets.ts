/**
 * The cloud token in the Electron app: encrypted with the OS keychain (Electron's `safeStorage`) by the
 * main process, because the engine's utility process has no `safeStorage`. The main process decrypts it
 * for each engine start (EngineStartOptions.secret) and encrypts what the engine sends back (`secret`
 * messages). Where the OS offers no encryption, the engine keeps its own 0600 file as in browser mode.
 * No `electron` import: main.ts passes `safeStorage`, tests a fake.
 */
import path from "node:path";
import { cipherSecretStore, TOKEN_FILE, type SecretCipher } from "./engine/settings.js";
import type { EngineStartOptions } from "./engineProtocol.js";

export interface KeychainKeeper {
  /** what the next engine start gets */
  secret(): NonNullable<EngineStartOptions["secret"]>;
  /** a token from the engine ("" removes it), encrypted and saved */
  save(token: string): Promise<void>;
}

/** The keeper for `dataDir`, or null when the OS cannot encrypt (the engine then keeps the token itself). */
export async function keychainKeeper(dataDir: string, cipher: SecretCipher): Promise<KeychainKeeper | null> {
  const store = cipherSecretStore(path.join(dataDir, TOKEN_FILE), cipher);
  if (store.kind !== "keychain") return null;
  let token = await store.read().catch(() => null); // unreadable (another machine's): as if none was saved
  let writes = Promise.resolve();
  return {
    secret: () => ({ token }),
    save(next) {
      token = next || null; // a restart this session gets it even if the disk refuses it
      // one write after another: the last token sent is the one on disk
      const write = writes.then(() => store.write(next));
      writes = write.catch(() => {});
      return write;
    },
  };
}
