/**
 * Bearer-token authentication and the loopback rule for running without a token.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { isIPv4 } from "node:net";

export type BearerVerifier = (authorization: string | undefined) => boolean;

/**
 * A verifier for `Authorization: Bearer <token>`. Both sides are hashed before the constant-time
 * comparison, so neither the comparison time nor an early length check tells how long the token is.
 */
export function bearerVerifier(token: string): BearerVerifier {
  const expected = sha256(token);
  return (authorization) => {
    const presented = parseBearer(authorization);
    // hash something even without a token so a missing header costs the same as a wrong one
    const ok = timingSafeEqual(sha256(presented ?? ""), expected);
    return ok && presented !== undefined;
  };
}

/** The token of an `Authorization: Bearer <token>` header, if it is one. */
export function parseBearer(authorization: string | undefined): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
  return m ? m[1] : undefined;
}

/** Rejects tokens that cannot travel in a header unchanged or are too short to resist guessing. */
export function checkTokenStrength(token: string): void {
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new Error("The access token must be printable ASCII without spaces (it travels in an HTTP header)");
  }
  if (token.length < 16) throw new Error("The access token must be at least 16 characters long");
}

/** A short, non-reversible tag of a token, to key per-client state without keeping the token itself. */
export function tokenTag(token: string): string {
  return sha256(token).toString("hex").slice(0, 16);
}

/** Whether `host` (a name or address, IPv6 with or without brackets) is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (isIPv4(h)) return h.startsWith("127.");
  if (h.startsWith("::ffff:")) return isLoopbackHost(h.slice("::ffff:".length)); // IPv4-mapped IPv6
  return false;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}
