/** Reading a /route stream's body: NDJSON, bounded in line length and in total. */
import { PROTOCOL_LIMITS } from "../../../shared/protocol.js";
import { CloudCallError } from "./peer.js";

/** Longest route line accepted: a position is ~40 bytes; anything far longer is not a route stream. */
const MAX_LINE = 4096;
/**
 * Most bytes one route stream may carry: its positions (at most maxRoute) and last line, with room to
 * spare. Blank lines or a server that never ends would otherwise be read without bound.
 */
const MAX_ROUTE_BYTES = (PROTOCOL_LIMITS.maxRoute + 2) * 256;

/** The JSON values of an NDJSON response body, as they arrive. */
export async function* ndjsonLines(res: Response, stats: { bytesDown: number }): AsyncGenerator<unknown> {
  if (!res.body) throw new CloudCallError("malformed", "the route stream has no body");
  const decoder = new TextDecoder();
  let buffered = "";
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    stats.bytesDown += chunk.byteLength;
    total += chunk.byteLength;
    // leaving the loop by this throw cancels the body, which closes the connection
    if (total > MAX_ROUTE_BYTES)
      throw new CloudCallError("malformed", `the route stream carried more than ${MAX_ROUTE_BYTES} bytes: refused`);
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() === "") continue;
      try {
        yield JSON.parse(line) as unknown;
      } catch {
        throw new CloudCallError("malformed", "the cloud sent a malformed route line");
      }
    }
    if (buffered.length > MAX_LINE) throw new CloudCallError("malformed", "the cloud sent an over-long route line");
  }
}
