/** Persistence: atomic writes, a crash mid-write, a corrupt file set aside, a reload. */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConversationStore } from "../../electron/engine/conversationStore.js";
import { repoRoot } from "../helpers/shared.js";

const tmp = () => mkdtempSync(path.join(tmpdir(), "tandem-store-"));
const token = (index: number) => ({ index, tokenId: index, text: "x", origin: "cloud" as const, confidence: 0.2, tau: 0.5, cloudLatencyMs: 4, slmTokenId: 7 });

describe("conversation store", () => {
  it("saves and loads conversations with every token's origin and router data", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const c = await s.create("First");
    c.messages.push({ id: "m", role: "assistant", content: "x", createdAt: 1, tokens: [token(0)] });
    await s.save(c.id);
    const again = await ConversationStore.open(dir);
    expect(again.list().map((m) => m.title)).toEqual(["First"]);
    expect(again.get(c.id).messages[0].tokens![0]).toEqual(token(0));
    expect(again.notices).toEqual([]);
  });

  it("a crash mid-write leaves the previous version intact (the temporary file is dropped at start)", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const c = await s.create("Before");
    s.hooks = {
      afterPartialWrite: () => {
        throw new Error("simulated crash: power lost mid-write");
      },
    };
    c.title = "After";
    await expect(s.save(c.id)).rejects.toThrow(/simulated crash/);
    // a real crash leaves the temporary file behind: put one back as it would be
    writeFileSync(path.join(dir, "conversations", `${c.id}.json.tmp-deadbeef`), '{"version":1,"conversa');
    const reopened = await ConversationStore.open(dir);
    expect(reopened.get(c.id).title).toBe("Before");
    expect(reopened.notices).toEqual([]);
    expect(readdirSync(path.join(dir, "conversations"))).toEqual([`${c.id}.json`]);
  });

  it("SIGKILL during a stream of saves never leaves an unreadable file", async () => {
    const dir = tmp();
    // a child process saves a growing conversation in a loop; it is killed at an arbitrary moment
    const script = `
      import { ConversationStore } from ${JSON.stringify(path.join(repoRoot, "electron/engine/conversationStore.ts"))};
      const s = await ConversationStore.open(${JSON.stringify(dir)});
      const c = await s.create("Crash");
      process.stdout.write("ready\\n");
      for (let i = 0; ; i++) {
        c.messages.push({ id: "m" + i, role: "assistant", content: "y".repeat(2000), createdAt: i, tokens: [] });
        await s.save(c.id);
      }`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((r) => child.stdout!.once("data", () => r()));
    await new Promise((r) => setTimeout(r, 300));
    await new Promise<void>((r) => {
      child.once("exit", () => r());
      child.kill("SIGKILL");
    });
    const s = await ConversationStore.open(dir);
    expect(s.notices).toEqual([]);
    const [meta] = s.list();
    expect(meta.title).toBe("Crash");
    expect(meta.messageCount).toBeGreaterThan(0);
  });

  it("a corrupt file is moved aside with a clear notice; the others load", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    await s.create("Good");
    writeFileSync(path.join(dir, "conversations", "broken.json"), "{ not json");
    const again = await ConversationStore.open(dir);
    expect(again.list().map((m) => m.title)).toEqual(["Good"]);
    expect(again.notices).toHaveLength(1);
    expect(again.notices[0]).toMatch(/could not be read .* moved aside to .*broken\.json\.corrupt-\d+/);
    const files = readdirSync(path.join(dir, "conversations"));
    expect(files.some((f) => f.startsWith("broken.json.corrupt-"))).toBe(true);
    expect(readFileSync(path.join(dir, "conversations", files.find((f) => f.startsWith("broken"))!), "utf8")).toBe("{ not json");
  });

  it("rename and delete persist", async () => {
    const dir = tmp();
    const s = await ConversationStore.open(dir);
    const a = await s.create("A");
    const b = await s.create("B");
    await s.rename(a.id, "  Renamed  ");
    await s.delete(b.id);
    const again = await ConversationStore.open(dir);
    expect(again.list().map((m) => m.title)).toEqual(["Renamed"]);
  });
});
