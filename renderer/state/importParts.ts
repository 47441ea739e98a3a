/**
 * An export file cut into parts that each fit one bridge call (browser mode's WebSocket takes at most
 * MAX_WIRE_MESSAGE_BYTES a message): an export of all conversations is split between conversations,
 * each part an export of its own. A file that fits, or is not an export of all, stays whole (the engine
 * says what is wrong with it). Pure: tested in Node.
 */
import { MAX_WIRE_MESSAGE_BYTES } from "../../shared/bridge";

/** What a call carrying `content` weighs on the wire (the text is escaped inside the call's JSON). */
export function wireBytes(content: string): number {
  return new TextEncoder().encode(JSON.stringify(content)).length + 256;
}

export function importParts(content: string, maxBytes = MAX_WIRE_MESSAGE_BYTES): string[] {
  if (wireBytes(content) <= maxBytes) return [content];
  let file: { format?: unknown; version?: unknown; conversations?: unknown };
  try {
    file = JSON.parse(content) as typeof file;
  } catch {
    return [content]; // not JSON: the engine's refusal says so (if the call fits at all)
  }
  if (!file || !Array.isArray(file.conversations)) return [content];
  const pack = (list: unknown[]) => JSON.stringify({ format: file.format, version: file.version, conversations: list });
  const parts: string[] = [];
  let batch: unknown[] = [];
  file.conversations.forEach((c, i) => {
    const alone = pack([c]);
    if (wireBytes(alone) > maxBytes) {
      const title = (c as { title?: unknown } | null)?.title;
      const name = typeof title === "string" ? ` (“${title.slice(0, 60)}”)` : "";
      const mb = (wireBytes(alone) / 2 ** 20).toFixed(1);
      throw new Error(
        `Nothing was imported: conversation ${i + 1}${name} alone is ${mb} MB, more than one call of browser mode carries (1 MB); import the file in the desktop app`,
      );
    }
    if (batch.length && wireBytes(pack([...batch, c])) > maxBytes) {
      parts.push(pack(batch));
      batch = [];
    }
    batch.push(c);
  });
  if (batch.length) parts.push(pack(batch));
  return parts;
}
