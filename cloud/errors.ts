/**
 * Errors the cloud token server reports to clients. Every failure a client can cause or observe is a
 * `CloudError` with a stable protocol code; the HTTP status follows from the code alone, so the session
 * manager never has to know about HTTP.
 */
import type { ErrorBody, ErrorCode } from "../shared/protocol.js";

export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  unauthorized: 401,
  bad_request: 400,
  payload_too_large: 413,
  not_found: 404,
  session_not_found: 404,
  vocab_mismatch: 409,
  protocol_mismatch: 400,
  // the request is well formed but does not fit the session's state: the client resends from `length`
  out_of_sync: 409,
  context_overflow: 413,
  too_many_sessions: 429,
  rate_limited: 429,
  internal: 500,
};

export class CloudError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** for out_of_sync: the length the server holds */
    readonly length?: number,
  ) {
    super(message);
    this.name = "CloudError";
  }

  get status(): number {
    return HTTP_STATUS[this.code];
  }

  toBody(): ErrorBody {
    return {
      error: { code: this.code, message: this.message, ...(this.length === undefined ? {} : { length: this.length }) },
    };
  }
}
