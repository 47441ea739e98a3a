import { describe, expect, it } from "vitest";
import { createStores, defaultDisplay, parseDisplaySettings } from "../../renderer/state/stores.js";

describe("display settings (origins shown, theme)", () => {
  it("read back what was stored", () => {
    expect(parseDisplaySettings(JSON.stringify({ showOrigins: false, theme: "dark" }))).toEqual({ showOrigins: false, theme: "dark" });
  });

  it("anything malformed falls back to the defaults, field by field", () => {
    expect(parseDisplaySettings(null)).toEqual(defaultDisplay);
    expect(parseDisplaySettings("{not json")).toEqual(defaultDisplay);
    expect(parseDisplaySettings(JSON.stringify({ showOrigins: "no", theme: "purple" }))).toEqual(defaultDisplay);
    expect(parseDisplaySettings(JSON.stringify({ theme: "light" }))).toEqual({ ...defaultDisplay, theme: "light" });
  });

  it("the UI store starts from them", () => {
    const s = createStores({ showOrigins: false, theme: "light" });
    expect(s.ui.getState()).toMatchObject({ showOrigins: false, theme: "light", pinned: null });
  });
});
