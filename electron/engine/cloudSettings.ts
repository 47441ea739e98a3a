/**
 * The user's cloud settings, checked before any connection, and the one connection failure that is the
 * settings' fault rather than the network's (a refused token). Shared by the engine service (the app's
 * Settings) and the terminal chat (--cloud, --token), so both say the same thing.
 */
import { CloudCallError } from "./cloud/peer.js";
import { TandemError } from "../../shared/errors.js";

/** Settings that cannot work, whatever the network does: shown to the user as they are. */
export class CloudSettingsError extends TandemError {
  constructor(message: string) {
    super("cloud_settings", message);
  }
}

/** A Tandem token server accepts no shorter token (cloud/auth.ts), so a shorter one can only fail. */
export const MIN_TOKEN_LENGTH = 16;
const MAX_URL_LENGTH = 2048;
const MAX_TOKEN_LENGTH = 4096;

/** How a user-typed value is quoted in a message: visible control characters, never too long. */
function quote(s: string): string {
  const q = JSON.stringify(s);
  return q.length > 80 ? `${q.slice(0, 77)}…"` : q;
}

/**
 * Checks a cloud URL and bearer token; returns the URL as the clients want it (no trailing slash).
 * Throws CloudSettingsError with a message that says what is wrong and what a right value looks like.
 * The token is never echoed.
 */
export function checkCloudSettings(s: { url: string; token: string }): { url: string; token: string } {
  const raw = String(s.url ?? "").trim();
  const token = String(s.token ?? "");
  if (!raw) throw new CloudSettingsError("No cloud URL: enter the address of a Tandem token server, e.g. http://192.168.1.20:8788");
  if (raw.length > MAX_URL_LENGTH) throw new CloudSettingsError(`The cloud URL is too long (${raw.length} characters)`);
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CloudSettingsError(`${quote(raw)} is not a URL: a cloud URL looks like http://host:8788 or https://host`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new CloudSettingsError(`The cloud URL must start with http:// or https:// (not ${u.protocol}): ${quote(raw)}`);
  }
  if (!u.hostname) throw new CloudSettingsError(`The cloud URL has no host name: ${quote(raw)}`);
  // fetch refuses URLs with credentials, and a token in a URL ends up in logs: it has its own field
  if (u.username || u.password) throw new CloudSettingsError("Put the access token in the token field, not in the cloud URL");
  // the clients append /v1/... to the URL: a query or fragment would end up in the middle of every path
  if (u.search || u.hash) throw new CloudSettingsError(`The cloud URL must not have a query (?…) or fragment (#…): ${quote(raw)}`);
  if (token) {
    if (!/^[\x21-\x7e]+$/.test(token)) {
      throw new CloudSettingsError("The access token must be printable ASCII without spaces or line breaks (it travels in an HTTP header)");
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new CloudSettingsError(
        `The access token is too short (${token.length} characters): a Tandem token server's tokens have at least ${MIN_TOKEN_LENGTH}`,
      );
    }
    if (token.length > MAX_TOKEN_LENGTH) throw new CloudSettingsError(`The access token is too long (${token.length} characters)`);
  }
  return { url: u.toString().replace(/\/$/, ""), token };
}

/** Whether two cloud URLs are the same server (scheme, host, port): a saved token is only ever sent to its own server. */
export function sameServer(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/**
 * A clear message when the cloud refused the token (HTTP 401/403), or null for any other failure.
 * A refused token never starts working by retrying, unlike an unreachable server: callers stop using
 * that cloud (the app answers locally and says why; the terminal chat exits).
 */
export function authFailure(err: unknown, url: string, hadToken: boolean): string | null {
  if (!(err instanceof CloudCallError) || err.reason !== "http" || (err.status !== 401 && err.status !== 403)) return null;
  const what = hadToken ? "refused the access token" : "needs an access token";
  return `The cloud at ${url} ${what} (HTTP ${err.status}): ${hadToken ? "check" : "enter"} the token given by whoever runs the server.`;
}
