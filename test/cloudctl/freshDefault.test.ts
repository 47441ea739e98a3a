/**
 * The app's default control (issue 18): a fresh install starts on the target share; a τ given on the
 * command line or saved before keeps τ the control; what the user then chooses survives a restart.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { APP_TARGET_SHARE } from "../../shared/cloudControl.js";
import { TandemService } from "../../electron/engine/service.js";
import type { ServiceOptions } from "../../electron/engine/serviceOptions.js";

const fresh = () => mkdtempSync(path.join(tmpdir(), "tandem-fresh-share-"));

async function targetShareAt(opts: ServiceOptions): Promise<number | null> {
  const service = await TandemService.open(opts);
  try {
    return (await service.cloudControl({})).targetShare;
  } finally {
    await service.close();
  }
}

describe("the fresh install's cloud control", () => {
  it("is the target share in the app, τ where the caller gives none (the CLI, tests)", async () => {
    expect(await targetShareAt({ dataDir: fresh(), freshTargetShare: APP_TARGET_SHARE })).toBe(APP_TARGET_SHARE);
    expect(await targetShareAt({ dataDir: fresh() })).toBeNull();
  });

  it("stays τ when τ is given for this run, or was saved by an earlier version", async () => {
    expect(await targetShareAt({ dataDir: fresh(), freshTargetShare: APP_TARGET_SHARE, tau: 0.4 })).toBeNull();
    const dataDir = fresh();
    const first = await TandemService.open({ dataDir });
    await first.setTau({ tau: 0.3 });
    await first.close();
    expect(await targetShareAt({ dataDir, freshTargetShare: APP_TARGET_SHARE })).toBeNull();
  });

  it("what the user chooses survives a restart: τ stays τ, another share stays that share", async () => {
    const dataDir = fresh();
    const a = await TandemService.open({ dataDir, freshTargetShare: APP_TARGET_SHARE });
    await a.updateCloudControl({ targetShare: null });
    await a.close();
    expect(await targetShareAt({ dataDir, freshTargetShare: APP_TARGET_SHARE })).toBeNull();

    const other = fresh();
    const b = await TandemService.open({ dataDir: other, freshTargetShare: APP_TARGET_SHARE });
    await b.updateCloudControl({ budgets: { dayTokens: 500 } }); // a budget saves the share it was set beside
    await b.close();
    const c = await TandemService.open({ dataDir: other, freshTargetShare: 0.2 });
    expect((await c.cloudControl({})).targetShare).toBe(APP_TARGET_SHARE);
    expect((await c.cloudControl({})).budgets.dayTokens).toBe(500);
    await c.close();
  });

  it("a cloud-control file that cannot be read is set aside, and the app's default applies", async () => {
    const dataDir = fresh();
    writeFileSync(path.join(dataDir, "cloud-control.json"), "{ not json");
    const service = await TandemService.open({ dataDir, freshTargetShare: APP_TARGET_SHARE });
    expect((await service.cloudControl({})).targetShare).toBe(APP_TARGET_SHARE);
    await service.close();
  });
});
