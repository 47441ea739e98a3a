/**
 * Atomic file replacement: write a temporary file beside the target, fsync it, rename it over the
 * target, fsync the directory. A crash at any point leaves either the old file or the new one, never a
 * half-written one (rename is atomic on POSIX file systems and on APFS).
 */
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import path from "node:path";

export const TEMP_MARK = ".tmp-";

/** Test seam: lets a test stop the write at a chosen point, as a crash would. Never set in production. */
export interface WriteHooks {
  /** called after part of the data has been written to the temporary file */
  afterPartialWrite?: () => void | Promise<void>;
  /** called after the temporary file is complete and synced, before the rename */
  beforeRename?: () => void | Promise<void>;
}

export async function writeFileAtomic(file: string, data: string, hooks: WriteHooks = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${path.basename(file)}${TEMP_MARK}${randomBytes(6).toString("hex")}`);
  const bytes = Buffer.from(data, "utf8");
  const fh = await open(tmp, "w", 0o600);
  let renamed = false;
  try {
    const half = bytes.length >> 1;
    await fh.write(bytes, 0, half, 0);
    await hooks.afterPartialWrite?.();
    await fh.write(bytes, half, bytes.length - half, half);
    await fh.sync();
    await fh.close();
    await hooks.beforeRename?.();
    await rename(tmp, file);
    renamed = true;
    await syncDir(dir);
  } finally {
    if (!renamed) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  // makes the rename itself durable; some platforms refuse to open a directory: then the OS decides
  let dh;
  try {
    dh = await open(dir, "r");
    await dh.sync();
  } catch {
    // not fatal: the data is already synced, only the directory entry's durability is left to the OS
  } finally {
    await dh?.close().catch(() => {});
  }
}
