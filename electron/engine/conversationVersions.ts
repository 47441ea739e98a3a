/**
 * Versions and branches of a conversation, kept so that the *active path* stays a plain list of
 * messages (`Conversation.messages`): what the prompt builder and the context policy read, unchanged.
 *
 * A point of the conversation that has more than one version (an answer regenerated, a user message
 * edited) is the message at that position of the active path holding, in `versions`, the other
 * versions' continuations from there — each a list of messages starting with that version's message,
 * with its own forks further down inside it — and in `version` its own place among them all. Only the
 * message on the active path holds them; the messages inside `versions` hold none for this position.
 *
 * Pure: each function returns a new active path and leaves the messages it was given untouched (the
 * service restores the old path if the new one cannot be saved).
 */
import type { StoredMessage } from "../../shared/bridge.js";

/** How many versions the message at this position has (1: no fork). */
export function versionCount(m: StoredMessage): number {
  return (m.versions?.length ?? 0) + 1;
}

/** All versions at position `at`, in order, each as its continuation; and the active one's place. */
function versionsAt(path: readonly StoredMessage[], at: number): { all: StoredMessage[][]; active: number } {
  const head = path[at];
  if (!head) throw new Error(`No message at position ${at}`);
  const others = head.versions ?? [];
  const active = Math.min(head.version ?? 0, others.length);
  const { versions: _v, version: _n, ...plain } = head;
  const current = [plain, ...path.slice(at + 1)];
  return { all: [...others.slice(0, active), current, ...others.slice(active)], active };
}

/** The path whose message at `at` is the first of `tail`, holding the other versions `others` with itself at `place`. */
function withTail(
  path: readonly StoredMessage[],
  at: number,
  tail: readonly StoredMessage[],
  others: StoredMessage[][],
  place: number,
): StoredMessage[] {
  const head: StoredMessage = { ...tail[0], versions: others, version: place };
  return [...path.slice(0, at), head, ...tail.slice(1)];
}

/**
 * A new version at position `at` (the newest, and the active one): `tail` replaces the path from `at`
 * on, and what was there is kept as the previous version. Regenerate forks at the answer, an edit at
 * the user message. `at` equal to the path's length appends (nothing there to keep).
 */
export function fork(path: readonly StoredMessage[], at: number, tail: readonly StoredMessage[]): StoredMessage[] {
  if (!tail.length) throw new Error("A version needs at least one message");
  if (at === path.length) return [...path, ...tail];
  const { all } = versionsAt(path, at);
  return withTail(path, at, tail, all, all.length);
}

/** The path with version `k` (from 0) made active at position `at`; the one active before is kept. */
export function selectVersion(path: readonly StoredMessage[], at: number, k: number): StoredMessage[] {
  const { all, active } = versionsAt(path, at);
  if (!Number.isInteger(k) || k < 0 || k >= all.length) throw new Error(`No version ${k + 1} here (there are ${all.length})`);
  if (k === active) return [...path];
  const others = all.filter((_, i) => i !== k);
  return withTail(path, at, all[k], others, k);
}
