/** Importing a file larger than one bridge call: cut between conversations, every part checked before any is imported. */
import { describe, expect, it } from "vitest";
import { exportAll } from "../../electron/engine/conversationArchive.js";
import { importParts, wireBytes } from "../../renderer/state/importParts.js";
import { createController } from "../../renderer/state/controller.js";
import { createStores } from "../../renderer/state/stores.js";
import type { Bridge, Conversation } from "../../shared/bridge.js";

const conv = (i: number, size = 200): Conversation => ({
  id: `c-${i}`,
  title: `T${i}`,
  createdAt: i,
  updatedAt: i,
  messages: [{ id: `m-${i}`, role: "user", content: `"quoted" ${"x".repeat(size)}`, createdAt: i }],
});

describe("import parts", () => {
  it("a file that fits stays whole; a larger export of all is cut between conversations, each part fitting", () => {
    const small = exportAll([conv(1)]).content;
    expect(importParts(small, 10_000)).toEqual([small]);
    const all = Array.from({ length: 40 }, (_, i) => conv(i));
    const parts = importParts(exportAll(all).content, 4_000);
    expect(parts.length).toBeGreaterThan(2);
    for (const p of parts) expect(wireBytes(p)).toBeLessThanOrEqual(4_000);
    const back = parts.flatMap((p) => (JSON.parse(p) as { format: string; version: number; conversations: Conversation[] }).conversations);
    expect(back).toEqual(all);
    expect(JSON.parse(parts[1])).toMatchObject({ format: "tandem-conversations", version: 2 });
  });

  it("a conversation too large for one call is refused by name", () => {
    const file = exportAll([conv(1), { ...conv(2, 8_000), title: "Huge" }]).content;
    expect(() => importParts(file, 4_000)).toThrow(/conversation 2 \(“Huge”\) alone is 0\.0 MB/);
  });

  it("the controller checks every part (dry run) before importing any; one refused part imports nothing", async () => {
    const all = Array.from({ length: 12 }, (_, i) => conv(i, 200_000)); // ~2.4 MB: three parts or more
    const calls: { dryRun: boolean; ids: string[] }[] = [];
    let refuse = false;
    const bridge = {
      subscribe: () => () => {},
      importConversations: async ({ content, dryRun }: { content: string; dryRun?: boolean }) => {
        const ids = (JSON.parse(content) as { conversations: Conversation[] }).conversations.map((c) => c.id);
        calls.push({ dryRun: !!dryRun, ids });
        if (refuse && ids.includes("c-11")) throw new Error("conversation 3 is not valid");
        return { imported: ids.map((id) => ({ id, title: id, createdAt: 0, updatedAt: 0, messageCount: 1 })), renamed: 0 };
      },
    } as unknown as Bridge;
    const errors: string[] = [];
    const ctl = createController(bridge, createStores(), (m) => errors.push(m));
    const r = await ctl.importConversations(exportAll(all).content);
    expect(r?.imported.map((m) => m.id)).toEqual(all.map((c) => c.id));
    const n = calls.length / 2;
    expect(n).toBeGreaterThanOrEqual(3);
    expect(calls.map((c) => c.dryRun)).toEqual([...Array(n).fill(true), ...Array(n).fill(false)]);
    calls.length = 0;
    refuse = true;
    expect(await ctl.importConversations(exportAll(all).content)).toBeUndefined();
    expect(calls.every((c) => c.dryRun)).toBe(true);
    expect(errors).toEqual(["conversation 3 is not valid"]);
  });
});
