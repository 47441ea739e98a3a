/**
 * Errors the cloud token server reports to clients. Every failure a client can cause or observe is a
 * `CloudError` with a stable protocol code; the HTTP status follows from the code, so the session
 * manager never has to know about HTTP. The one exception is overload (see `overloaded`): protocol v1
 * has no code of its own for it.
 */
import type { ErrorBody, ErrorCode } from "../shared/protocol.js";
import { TandemError } from "../shared/errors.js";

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
  // /route on a server started without an SLM replica, or for a router it cannot run
  no_replica: 501,
  rate_limited: 429,
  internal: 500,
};

export interface CloudErrorDetail {
  /** for out_of_sync: the length the server holds */
  length?: number;
  /** for out_of_sync: the tokens before the delta are not the client's (AppendRequest.prefix) */
  prefixMismatch?: true;
  /** sent as Retry-After (rounded up to whole seconds, at least 1) */
  retryAfterMs?: number;
  /** overrides the status of the code (only `overloaded` uses it) */
  status?: number;
}

export class CloudError extends TandemError {
  readonly length?: number;
  readonly prefixMismatch?: true;
  readonly retryAfterMs?: number;
  private readonly statusOverride?: number;

  constructor(
    override readonly code: ErrorCode,
    message: string,
    detail: CloudErrorDetail = {},
  ) {
    super(code, message);
    this.name = "CloudError";
    this.length = detail.length;
    this.prefixMismatch = detail.prefixMismatch;
    this.retryAfterMs = detail.retryAfterMs;
    this.statusOverride = detail.status;
  }

  get status(): number {
    return this.statusOverride ?? HTTP_STATUS[this.code];
  }

  toBody(): ErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.length === undefined ? {} : { length: this.length }),
        ...(this.prefixMismatch ? { prefixMismatch: true as const } : {}),
      },
    };
  }
}

/**
 * The whole server is saturated (not this client's fault): 503 with Retry-After. The code is
 * `rate_limited` because protocol v1 has no overload code; clients back off on 503 and 429 alike.
 */
export function overloaded(message: string, retryAfterMs: number): CloudError {
  return new CloudError("rate_limited", message, { status: 503, retryAfterMs });
}
