/**
 * Seeded generator of hostile requests for the cloud token server's fuzz test (fuzz.test.ts).
 *
 * Case i depends only on (seed, i), never on what the server answered before, so a failure names a
 * case that `TANDEM_FUZZ_SEED=<seed> TANDEM_FUZZ_ONLY=<i>` regenerates exactly. Sessions are named by
 * role ("pool:k", "created", "unknown") and resolved to real IDs when the case is sent.
 *
 * Each case states which statuses are right for it (`allow`), as narrowly as the server's documented
 * order of checks allows: rate limit → auth → route → method → body size → session ID → JSON → fields
 * → session state. 429 is always allowed (the rate limiter runs first); 2xx only where the request may
 * be valid (`mayPass`).
 */
import { PROTOCOL_LIMITS, PROTOCOL_VERSION, type ModelIdentity } from "../../shared/protocol.js";
import { mulberry32 as rng } from "../../shared/prng.js";
export { rng };

export type SessionRef = { pool: number } | "created" | "unknown-uuid" | "bad-id";

export interface HttpCase {
  kind: "http";
  category: string;
  method: string;
  /** path with `{session}` standing for the session this case targets */
  path: string;
  session?: SessionRef;
  headers: Record<string, string | string[]>;
  body?: Buffer;
  /** send the body as several chunks (Transfer-Encoding: chunked) */
  chunked?: boolean;
  /** statuses that are right; 429 is added by the runner */
  allow: number[];
  /** bookkeeping for the runner: a 200 here created / deleted a session */
  effect?: "create" | "delete";
}

export interface RawCase {
  kind: "raw";
  category: string;
  /** written in order, with `gapMs` between them (`{session}` is replaced in the first) */
  chunks: Buffer[];
  /** write the first chunk in this many pieces (after the session is filled in) */
  split?: number;
  gapMs: number;
  /** true: hang up after writing (partial request: no answer is owed) */
  abort: boolean;
  /**
   * true: half-close after writing, for input the server might otherwise wait on for more. Otherwise
   * the request says Connection: close (or is malformed) and the server closes when it has answered.
   * (Node's server drops the answer to a request whose client half-closed before it was ready.)
   */
  halfClose?: boolean;
  /** null: no answer is owed (abort, or the server may close malformed HTTP without one) */
  allow: number[] | null;
  session?: SessionRef;
}

export type FuzzCase = HttpCase | RawCase;

export interface FuzzContext {
  token: string;
  identity: ModelIdentity;
  host: string;
}

class Pick {
  constructor(readonly r: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo + 1));
  }
  one<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)];
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.r() * 256);
    return b;
  }
}

export const POOL_SIZE = 4;
const UNKNOWN_UUID = "123e4567-e89b-42d3-a456-426614174000";

/** values that break naive validators */
const NASTY_NUMBERS = [
  "-1",
  "-0",
  "0.5",
  "1e309",
  "-1e309",
  "1e-400",
  "9007199254740993",
  "9007199254740992",
  "4294967296",
  "2147483648",
  "1e21",
  "123456789012345678901234567890",
  "0.0000001",
  "1E2",
  "-9007199254740992",
];
const NASTY_JSON_VALUES = [
  "null",
  "true",
  "false",
  '""',
  '"0"',
  '"1"',
  "[]",
  "{}",
  "[null]",
  '["1"]',
  "[[1]]",
  '{"0":1}',
  '"\\ud800"',
  '"\\u0000"',
  ...NASTY_NUMBERS,
];

/** Bracket depth of JSON text (outside strings). */
function depthOf(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") max = Math.max(max, ++depth);
    else if (c === "]" || c === "}") depth--;
  }
  return max;
}

function deep(depth: number, open: string, close: string, inner = "1"): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

export function generateCase(seed: number, index: number, ctx: FuzzContext, vocabSize: number): FuzzCase {
  const p = new Pick(rng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0));
  const auth = { authorization: `Bearer ${ctx.token}` };
  const json = { "content-type": "application/json" };
  const roll = p.r();
  const poolRef = (): SessionRef => ({ pool: p.int(0, POOL_SIZE - 1) });
  const action = () => p.one(["next", "append", "truncate"] as const);
  const validToken = () => p.int(0, vocabSize - 1);
  const validBody = (a: "next" | "append" | "truncate"): Record<string, unknown> =>
    a === "truncate"
      ? { length: p.int(0, 8) }
      : {
          base: 0,
          tokens: Array.from({ length: p.int(1, 12) }, validToken),
          ...(a === "next" && p.chance(0.5) ? { topK: p.int(0, 20) } : {}),
        };
  const post = (
    category: string,
    path: string,
    session: SessionRef | undefined,
    body: Buffer | string | undefined,
    allow: number[],
    extra: Partial<HttpCase> = {},
  ): HttpCase => ({
    kind: "http",
    category,
    method: "POST",
    path,
    session,
    headers: { ...auth, ...json },
    body: body === undefined ? undefined : Buffer.from(body),
    allow,
    ...extra,
  });

  // ---- 1. random methods and paths (8%) ----
  if (roll < 0.08) {
    const method = p.one(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "PURGE", "SEARCH", "MKCOL"]);
    const path = p.one([
      "/",
      "/health/",
      "/health/x",
      "/v1",
      "/v1/",
      "/v1/sessions/",
      "/v2/sessions",
      "/V1/SESSIONS",
      "/v1/sessions//next",
      `/v1/sessions/${UNKNOWN_UUID}/next/extra`,
      "/v1/sessions/../health",
      "/%2e%2e/health",
      "/v1/sessions?x=1",
      `/v1/sessions/${UNKNOWN_UUID}/NEXT`,
      "/" + "a".repeat(p.int(1, 6000)),
      "/v1/sessions/%00",
      "/favicon.ico",
      "/.env",
      "/v1/sessions/x/../../",
      "/health?" + "q=1&".repeat(p.int(1, 500)),
    ]);
    const withAuth = p.chance(0.7);
    const headers: HttpCase["headers"] = withAuth ? { ...auth } : {};
    const body = p.chance(0.3) ? p.bytes(p.int(0, 300)) : undefined;
    // what is right follows the order of checks: /health is open; anything else needs the token first
    let allow: number[];
    const bare = path.split("?")[0];
    if (bare === "/health") allow = method === "GET" ? [200] : [405];
    else if (!withAuth) allow = [401];
    else if (bare === "/v1/sessions") allow = method === "POST" ? [400] : [405];
    else allow = [404, 405];
    return { kind: "http", category: "route", method, path, headers, body, allow };
  }

  // ---- 2. authentication (10%) ----
  if (roll < 0.18) {
    const variants: (string | string[] | undefined)[] = [
      undefined,
      "",
      "Bearer",
      "Bearer ",
      `bearer${ctx.token}`,
      `Basic ${Buffer.from("u:" + ctx.token).toString("base64")}`,
      `Bearer ${ctx.token.slice(0, -1)}`,
      `Bearer ${ctx.token}x`,
      `Bearer ${ctx.token.toUpperCase()}`,
      `Bearer ${ctx.token} extra`,
      `Bearer ${"A".repeat(p.int(100, 12_000))}`,
      `Bearer\t${ctx.token.slice(1)}`,
      `Token ${ctx.token}`,
      `Bearer ${ctx.token.slice(0, 8)}`,
      [`Bearer wrong-token-0123456789`, `Bearer ${ctx.token}`],
    ];
    const a = p.one(variants);
    const headers: HttpCase["headers"] = { ...json };
    if (a !== undefined) headers.authorization = a;
    const target = p.one(["create", "session", "health"] as const);
    if (target === "health") return { kind: "http", category: "auth", method: "GET", path: "/health", headers, allow: [200] };
    const body = Buffer.from(
      JSON.stringify(target === "create" ? { protocol: PROTOCOL_VERSION, client: ctx.identity } : validBody("next")),
    );
    const path = target === "create" ? "/v1/sessions" : `/v1/sessions/{session}/${action()}`;
    return {
      kind: "http",
      category: "auth",
      method: "POST",
      path,
      session: target === "create" ? undefined : poolRef(),
      headers,
      body,
      allow: [401],
    };
  }

  // ---- 3. garbage bodies on real sessions (18%) ----
  if (roll < 0.36) {
    const a = action();
    const valid = JSON.stringify(validBody(a));
    const kind = p.int(0, 10);
    let body: string | Buffer;
    let allow = [400];
    switch (kind) {
      case 0:
        body = p.bytes(p.int(1, 2000));
        break;
      case 1:
        body = valid.slice(0, p.int(0, valid.length - 1)); // truncated
        break;
      case 2:
        body = Buffer.concat([Buffer.from(valid.slice(0, 10)), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(valid.slice(10))]); // invalid UTF-8
        break;
      case 3:
        body = deep(p.one([10, 1000, 50_000, 200_000, 400_000]), "[", "]"); // nesting JSON.parse accepts, JSON.stringify does not
        break;
      case 4:
        body = deep(p.one([10, 1000, 50_000, 150_000]), '{"a":', "}");
        break;
      case 5:
        body = p.one(NASTY_JSON_VALUES);
        break;
      case 6:
        body = `{"base":0,"tokens":[${Array.from({ length: PROTOCOL_LIMITS.maxDeltaTokens + p.int(1, 5000) }, () => 1).join(",")}]}`;
        if (a === "truncate") allow = [400]; // truncate ignores tokens but wants `length`
        break;
      case 7:
        body = `{"base":0,"tokens":["${"x".repeat(p.int(1000, 900_000))}"]}`; // a huge string, echoed in no error
        if (a === "truncate") allow = [400];
        break;
      case 8:
        body = "";
        break;
      case 9:
        body = valid + p.one(["}", "]", ",", " x", "\u0000", "{}"]); // trailing garbage
        break;
      default:
        body = `{"base":0,"tokens":[1,2,3],"base":${p.one(NASTY_NUMBERS)}}`; // duplicate key: the last wins
        // -0, 1e-400 (= 0) and 1E2 are integers: valid, or beyond the session's length
        allow = a === "truncate" ? [400] : [200, 400, 409, 413];
    }
    return post("garbage", `/v1/sessions/{session}/${a}`, poolRef(), body, allow);
  }

  // ---- 4. wrong types and ranges (17%) ----
  if (roll < 0.53) {
    const a = action();
    // JSON text, not values: a value nested 100,000 deep cannot be put through JSON.stringify (the
    // very bug this category looks for in the server)
    const nasty = (): { text: string; num: boolean } => {
      const k = p.int(0, 4);
      if (k === 0) {
        const text = p.one(NASTY_JSON_VALUES);
        return { text, num: typeof JSON.parse(text) === "number" };
      }
      if (k === 1) return { text: deep(p.one([2, 5, 100, 20_000, 100_000]), "[", "]"), num: false }; // depth 1 would be a valid [1]
      if (k === 2) return { text: deep(p.one([1, 5, 2000, 50_000]), '{"x":', "}"), num: false };
      if (k === 3) return { text: JSON.stringify("s".repeat(p.int(0, 5000))), num: false };
      return { text: String(p.one([-1, 1.5, 2 ** 53, -(2 ** 31), 1e300, Number.MIN_VALUE, 0.1])), num: true };
    };
    const field = a === "truncate" ? "length" : p.one(["base", "tokens", "tokens[i]", "topK", "body"] as const);
    const body: Record<string, unknown> = validBody(a);
    const value = nasty();
    const HOLE = "@@nasty@@";
    if (field === "tokens[i]") (body.tokens as unknown[])[p.int(0, (body.tokens as unknown[]).length - 1)] = HOLE;
    else if (field !== "body") body[field] = HOLE;
    const text = field === "body" ? value.text : JSON.stringify(body).replace(`"${HOLE}"`, value.text);
    // a number may be a valid integer (-0, 1e-400 = 0, 100): then the session's state decides
    const num = value.num;
    const allow: Record<typeof field, number[]> = {
      base: num ? [200, 400, 409, 413] : [400],
      length: num ? [200, 400, 409] : [400],
      // the only valid token array nasty() gives is [], which append takes and next refuses at base 0
      tokens: value.text === "[]" && a === "append" ? [200] : [400],
      "tokens[i]": num ? [200, 400] : [400],
      // append ignores topK, unless it nests deeper than any request may (MAX_JSON_DEPTH, 8)
      topK: a === "append" ? (1 + depthOf(value.text) > 8 ? [400] : [200]) : num ? [200, 400] : [400],
      body: [400],
    };
    return post("types", `/v1/sessions/{session}/${a}`, poolRef(), text, allow[field]);
  }

  // ---- 5. token IDs out of range (8%) ----
  if (roll < 0.61) {
    const bad = p.one([vocabSize, vocabSize + 1, -1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, vocabSize + 65535, 1e21, -0.5, vocabSize - 0.5]);
    const tokens = Array.from({ length: p.int(1, 20) }, validToken);
    tokens[p.int(0, tokens.length - 1)] = bad;
    const a = p.one(["next", "append"] as const);
    return post("token-range", `/v1/sessions/{session}/${a}`, poolRef(), JSON.stringify({ base: 0, tokens }), [400]);
  }

  // ---- 6. unknown and malformed session IDs (6%) ----
  if (roll < 0.67) {
    const ref: SessionRef = p.chance(0.5) ? "unknown-uuid" : "bad-id";
    const a = p.one(["next", "append", "truncate", "delete"] as const);
    if (a === "delete")
      return {
        kind: "http",
        category: "session-id",
        method: "DELETE",
        path: "/v1/sessions/{session}",
        session: ref,
        headers: { ...auth },
        allow: [404],
      };
    return post("session-id", `/v1/sessions/{session}/${a}`, ref, JSON.stringify(validBody(a)), [404]);
  }

  // ---- 7. content types and encodings on valid requests (5%) ----
  if (roll < 0.72) {
    const a = action();
    const ct = p.one([
      undefined,
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/json; charset=latin1",
      "application/octet-stream",
    ]);
    const enc = p.one([undefined, undefined, "gzip", "br"]);
    const headers: HttpCase["headers"] = { ...auth };
    if (ct) headers["content-type"] = ct;
    if (enc) headers["content-encoding"] = enc; // not decoded: the body is plain JSON, read as such
    // the server reads JSON whatever the label; valid on a fresh... or out of sync on a busy pool session
    return {
      kind: "http",
      category: "content-type",
      method: "POST",
      path: `/v1/sessions/{session}/${a}`,
      session: poolRef(),
      headers,
      body: Buffer.from(JSON.stringify(validBody(a))),
      chunked: p.chance(0.3),
      allow: a === "truncate" ? [200, 409] : [200],
    };
  }

  // ---- 8. oversized bodies (3%) ----
  if (roll < 0.75) {
    const size = PROTOCOL_LIMITS.maxBodyBytes + p.int(1, 3 * PROTOCOL_LIMITS.maxBodyBytes);
    const head = `POST /v1/sessions/{session}/append HTTP/1.1\r\nHost: ${ctx.host}\r\nAuthorization: Bearer ${ctx.token}\r\nContent-Type: application/json\r\nConnection: close\r\n`;
    const piece = Buffer.alloc(64 * 1024, 0x20);
    const k = p.int(0, 2);
    if (k === 0) {
      // declared too large, little sent, then the client waits: refused once the server stops waiting
      return {
        kind: "raw",
        category: "oversized",
        chunks: [Buffer.from(`${head}Content-Length: ${size}\r\n\r\n{"base":0,`)],
        gapMs: 0,
        abort: false,
        allow: [413],
        session: poolRef(),
      };
    }
    if (k === 1) {
      // declared too large and all sent: refused, and the answer must survive the upload
      return {
        kind: "raw",
        category: "oversized",
        chunks: [Buffer.from(`${head}Content-Length: ${size}\r\n\r\n`), Buffer.alloc(size, 0x20)],
        gapMs: 0,
        abort: false,
        allow: [413],
        session: poolRef(),
      };
    }
    // really that large, chunked (no length to refuse it by): cut off once the limit is passed
    const framed = Buffer.from(`${piece.length.toString(16)}\r\n${piece.toString()}\r\n`);
    const chunks = [
      Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n`),
      ...Array.from({ length: Math.ceil(size / piece.length) }, () => framed),
      Buffer.from("0\r\n\r\n"),
    ];
    return { kind: "raw", category: "oversized", chunks, gapMs: 0, abort: false, allow: [413], session: poolRef() };
  }

  // ---- 9. mutations of valid requests (15%) ----
  if (roll < 0.9) {
    const target = p.one(["create", "next", "append", "truncate"] as const);
    let text =
      target === "create" ? JSON.stringify({ protocol: PROTOCOL_VERSION, client: ctx.identity }) : JSON.stringify(validBody(target));
    const ops = p.int(1, 3);
    for (let k = 0; k < ops; k++) {
      const at = p.int(0, text.length);
      switch (p.int(0, 6)) {
        case 0:
          text = text.slice(0, at) + text.slice(at + p.int(1, 8));
          break;
        case 1:
          text =
            text.slice(0, at) +
            p.one([...'{}[]",:0123456789-.eE ', "true", "null", "\\u0000", "\\", "\u00e9", "\ud83d\ude00"]) +
            text.slice(at);
          break;
        case 2:
          text = text.replace(/-?\d+(\.\d+)?/, p.one(NASTY_NUMBERS));
          break;
        case 3:
          text = text.replace(
            /"(base|tokens|length|topK|protocol|client|name|vocabHash|vocabSize)"/,
            `"${p.one(["__proto__", "constructor", "BASE", "tokens ", "", "toString"])}"`,
          );
          break;
        case 4:
          text = text.slice(0, at) + text.slice(at, at + p.int(1, 40)).repeat(p.int(2, 50)) + text.slice(at);
          break;
        case 5:
          text = text.replace(/(\d+)/, (d) => String(Number(d) ^ (1 << p.int(0, 30))));
          break;
        default:
          text = text.replace(/\[([^\]]*)\]/, (_m, inner: string) => `[${deep(p.int(1, 3000), "[", "]", inner || "1")}]`);
      }
    }
    // a mutation can leave a valid request, so 200 is right too; and every refusal the state allows
    if (target === "create") return post("mutation", "/v1/sessions", undefined, text, [200, 400, 409], { effect: "create" });
    return post("mutation", `/v1/sessions/{session}/${target}`, poolRef(), text, [200, 400, 409, 413]);
  }

  // ---- 10. malformed and slow HTTP on raw sockets (6%) ----
  if (roll < 0.96) {
    const host = `Host: ${ctx.host}\r\n`;
    const authH = `Authorization: Bearer ${ctx.token}\r\n`;
    const body = JSON.stringify(validBody("next"));
    const k = p.int(0, 13);
    const close = "Connection: close\r\n";
    const raw = (s: string | Buffer, allow: number[] | null, extra: Partial<RawCase> = {}): RawCase => ({
      kind: "raw",
      category: "http",
      chunks: [Buffer.isBuffer(s) ? s : Buffer.from(s, "latin1")],
      gapMs: 0,
      abort: false,
      allow,
      ...extra,
    });
    switch (k) {
      case 0:
        return raw(p.bytes(p.int(1, 500)), null, { halfClose: true }); // not HTTP at all: a 400, or silence if it never looks like a request
      case 1:
        return raw("GET /health HTTP/1.1\r\n" + host + "X-Long: " + "a".repeat(p.int(20_000, 60_000)) + "\r\n\r\n", [431]);
      case 2:
        return raw(`GET /health HTTP/1.1\r\n${host}Bad Header: x\r\n\r\n`, [400]);
      case 3:
        return raw(`GET /health HTTP/9.9\r\n${host}${close}\r\n`, [200, 400]);
      case 4:
        return raw(
          `POST /v1/sessions/{session}/next HTTP/1.1\r\n${host}${authH}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
          [400],
          { session: poolRef() },
        );
      case 5:
        // a broken chunk once the request is under way: closing the connection is all HTTP allows
        return raw(
          `POST /v1/sessions/{session}/next HTTP/1.1\r\n${host}${authH}Transfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
          null,
          { session: poolRef() },
        );
      case 6:
        return raw(`CONNECT ${ctx.host} HTTP/1.1\r\n${host}${authH}\r\n`, [405]);
      case 7:
        // a body that stops short, then the client hangs up: nothing is owed, the server must let go
        return raw(
          `POST /v1/sessions/{session}/append HTTP/1.1\r\n${host}${authH}Content-Length: ${body.length + 50}\r\n\r\n${body}`,
          null,
          { abort: true, session: poolRef() },
        );
      case 8: {
        // a slow but complete body: answered like a fast one
        const whole = Buffer.from(
          `POST /v1/sessions/{session}/next HTTP/1.1\r\n${host}${authH}${close}Content-Length: ${body.length}\r\n\r\n${body}`,
        );
        return {
          kind: "raw",
          category: "slow",
          chunks: [whole],
          split: p.int(3, 8),
          gapMs: p.int(10, 40),
          abort: false,
          allow: [200],
          session: poolRef(),
        };
      }
      case 9:
        // two requests in one write (pipelining): the first must be answered
        return raw(`GET /health HTTP/1.1\r\n${host}\r\nGET /nope HTTP/1.1\r\n${host}${authH}Connection: close\r\n\r\n`, [200]);
      case 10:
        // no WebSocket here: Node answers it as a plain request (a server may ignore Upgrade, RFC 9110 7.8)
        return raw(
          `GET /health HTTP/1.1\r\n${host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          [200, 400, 426],
          { halfClose: true },
        );
      case 11:
        return raw(
          `POST /v1/sessions/{session}/next HTTP/1.1\r\n${host}${authH}Expect: 100-continue\r\n${close}Content-Length: ${body.length}\r\n\r\n${body}`,
          [200],
          { session: poolRef() },
        );
      case 12:
        return raw(`GET /health HTTP/1.1\r\n${close}\r\n`, [400]); // HTTP/1.1 without Host
      default:
        return raw(`GET /health HTTP/1.0\r\n\r\n`, [200]);
    }
  }

  // ---- 11. valid traffic in between (4%): the storm must not stop real work ----
  const k = p.int(0, 3);
  if (k === 0)
    return post("valid", "/v1/sessions", undefined, JSON.stringify({ protocol: PROTOCOL_VERSION, client: ctx.identity }), [200], {
      effect: "create",
    });
  if (k === 1)
    return {
      kind: "http",
      category: "valid",
      method: "DELETE",
      path: "/v1/sessions/{session}",
      session: "created",
      headers: { ...auth },
      allow: [200, 404],
      effect: "delete",
    };
  const a = action();
  // other workers use the same pool sessions, so a base of 0 is always in range but the length is not known
  return post("valid", `/v1/sessions/{session}/${a}`, poolRef(), JSON.stringify(validBody(a)), a === "truncate" ? [200, 409] : [200]);
}
