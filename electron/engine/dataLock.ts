/**
 * One running engine per data folder. Two instances on one folder erased each other's work: a rename in
 * one wiped an answer the other had written, and a starting instance deleted the other's in-flight
 * temporary files and replayed its live journal. The engine (Electron or browser mode) takes this lock
 * before it opens anything in the folder; a second one is refused with an error naming the holder.
 *
 * The lock is `<dataDir>/tandem.lock` holding the owner's pid. It is created with link(2), which fails
 * if the name exists, so two starters cannot both create it. A lock whose process is gone (a crash, a
 * SIGKILL) is stale and taken over: it is first renamed to a name of our own (only one renamer can win),
 * then checked to be the very lock judged stale before it is removed.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TandemError } from "../../shared/errors.js";

export const LOCK_NAME = "tandem.lock";

interface LockInfo {
  pid: number;
  host: string;
  startedAt: number;
  token: string;
}

export class DataFolderLockedError extends TandemError {
  constructor(
    readonly dir: string,
    readonly holder: LockInfo,
  ) {
    super(
      "data_folder_locked",
      `The data folder ${dir} is in use by another Tandem instance (process ${holder.pid}, started ` +
        `${new Date(holder.startedAt).toISOString()}${holder.host && holder.host !== os.hostname() ? ` on ${holder.host}` : ""}). ` +
        `Close that instance first, or use another data folder (if it is not running, delete ${path.join(dir, LOCK_NAME)}).`,
    );
    this.name = "DataFolderLockedError";
  }
}

/** Locks held by this process, by lock file: a second engine in one process is refused too. */
const held = new Set<string>();

export interface DataFolderLock {
  readonly file: string;
  release(): Promise<void>;
}

export async function lockDataFolder(dir: string): Promise<DataFolderLock> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, LOCK_NAME);
  const me: LockInfo = { pid: process.pid, host: os.hostname(), startedAt: Date.now(), token: randomBytes(8).toString("hex") };
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await tryCreate(file, me)) {
      held.add(file);
      return { file, release: () => release(file, me.token) };
    }
    const holder = await readLock(file);
    if (holder && isLive(file, holder)) throw new DataFolderLockedError(dir, holder);
    await takeOverStale(file, holder);
  }
  throw new Error(`Could not lock the data folder ${dir}: its lock file ${file} keeps changing`);
}

/** Writes our lock beside the target, then links it into place: atomic and exclusive. */
async function tryCreate(file: string, me: LockInfo): Promise<boolean> {
  const tmp = `${file}.${me.token}`;
  await writeFile(tmp, JSON.stringify(me), { mode: 0o600 });
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** The lock's content, or null when it is unreadable or not ours to understand (then it is stale). */
async function readLock(file: string): Promise<LockInfo | null> {
  try {
    const o = JSON.parse(await readFile(file, "utf8")) as Partial<LockInfo>;
    if (!Number.isInteger(o.pid) || typeof o.token !== "string") return null;
    return { pid: o.pid!, host: String(o.host ?? ""), startedAt: Number(o.startedAt) || 0, token: o.token };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { pid: -1, host: "", startedAt: 0, token: "" };
    return null;
  }
}

function isLive(file: string, holder: LockInfo): boolean {
  if (holder.pid === -1) return false; // vanished meanwhile: try again
  // another computer's process cannot be checked from here: assume it lives (a shared network folder)
  if (holder.host && holder.host !== os.hostname()) return true;
  // our own pid: live only if this process holds it now (else it is left from before a pid reuse)
  if (holder.pid === process.pid) return held.has(file);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

async function takeOverStale(file: string, judged: LockInfo | null): Promise<void> {
  if (judged?.pid === -1) return; // already gone
  const aside = `${file}.stale-${randomBytes(6).toString("hex")}`;
  try {
    await rename(file, aside);
  } catch {
    return; // another starter moved it first: look again
  }
  const moved = await readLock(aside);
  if (judged && moved && moved.token !== judged.token) {
    // between our look and our rename someone replaced the stale lock with a live one: put it back
    await link(aside, file).catch(() => {});
  }
  await unlink(aside).catch(() => {});
}

async function release(file: string, token: string): Promise<void> {
  if (!held.delete(file)) return;
  const now = await readLock(file);
  if (now?.token === token) await unlink(file).catch(() => {});
}
