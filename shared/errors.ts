/**
 * One error model for every process (no Node imports: the renderer may import it too).
 *
 *   TandemError  the base: a message for people and a stable `code` for programs
 *   HttpError    a peer answered with an HTTP error status (the cloud client, the engine adapters,
 *                `cloud:check`): the status and the start of the body are kept for the message
 *   UsageError   a mistake on a command line or in arguments: the caller prints the usage text
 *   errorMessage(unknown)  the message of anything thrown, for logs and fallback reasons
 */

export class TandemError extends Error {
  constructor(
    /** stable and machine-readable, e.g. "http", "usage", "bad_request" */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** the part of an error body kept in the message: enough to say what failed, bounded for logs */
const MAX_BODY_IN_MESSAGE = 200;

export class HttpError extends TandemError {
  constructor(
    readonly status: number,
    /** the response body as text ("" when there was none or it could not be read) */
    readonly bodyText = "",
    message = `HTTP ${status}${bodyText ? `: ${bodyText.slice(0, MAX_BODY_IN_MESSAGE)}` : ""}`,
  ) {
    super("http", message);
  }
}

/** A mistake in how a command was called: exit code 2 with the usage text. */
export class UsageError extends TandemError {
  constructor(message: string) {
    super("usage", message);
  }
}

/** The message of anything thrown: an Error's message, a string as is, anything else as JSON or String(). */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  if (err === undefined || err === null) return String(err);
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}
