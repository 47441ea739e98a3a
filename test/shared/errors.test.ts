import { describe, expect, it } from "vitest";
import { errorMessage, HttpError, TandemError, UsageError } from "../../shared/errors.js";

describe("one error model", () => {
  it("every error has a code and a name, and is an Error", () => {
    const http = new HttpError(503, "overloaded");
    const usage = new UsageError("--tau must be a number");
    for (const [e, code, name] of [
      [http, "http", "HttpError"],
      [usage, "usage", "UsageError"],
      [new TandemError("bad_request", "no"), "bad_request", "TandemError"],
    ] as const) {
      expect(e).toBeInstanceOf(Error);
      expect(e).toBeInstanceOf(TandemError);
      expect(e.code).toBe(code);
      expect(e.name).toBe(name);
    }
  });

  it("an HTTP error keeps the status and the body, and says both, the body bounded", () => {
    const e = new HttpError(500, "x".repeat(1000));
    expect(e.status).toBe(500);
    expect(e.bodyText.length).toBe(1000);
    expect(e.message).toBe(`HTTP 500: ${"x".repeat(200)}`);
    expect(new HttpError(404).message).toBe("HTTP 404");
    expect(new HttpError(401, "", "refused: check the token").message).toBe("refused: check the token");
  });

  it("errorMessage says what anything thrown was", () => {
    expect(errorMessage(new RangeError("τ must be in [0, 1]"))).toBe("τ must be in [0, 1]");
    expect(errorMessage("plain")).toBe("plain");
    expect(errorMessage(undefined)).toBe("undefined");
    expect(errorMessage(null)).toBe("null");
    expect(errorMessage({ code: 7 })).toBe('{"code":7}');
    expect(errorMessage(42)).toBe("42");
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(errorMessage(cyclic)).toBe("[object Object]");
  });
});
