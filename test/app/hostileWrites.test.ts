/**
 * Issue 16, classes 2 and 6: failed writes and destructive operations before validation.
 *
 * Class 2 on a real full disk: the data folder is a 1 MiB tmpfs (root only; skipped with a message
 * otherwise) filled up by a file. Every store write fails with ENOSPC, leaves memory as the disk has it,
 * cuts a torn journal line back, and works again once the filler is removed. The real engine (stories
 * pair) refuses a message whose start cannot be saved, without getting stuck "already generating".
 * Class 6: regenerate and edit refused for an invalid argument have changed nothing.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConversationStore, JOURNAL_EXT } from "../../electron/engine/conversationStore.js";
import { TandemService } from "../../electron/engine/service.js";
import type { BridgeEvent } from "../../shared/bridge.js";
import { storiesPair } from "../helpers/pair.js";

const pair = await storiesPair();
const token = (index: number, text = "x") => ({
  index,
  tokenId: index,
  text,
  origin: "local" as const,
  confidence: 0.9,
  tau: 0.5,
  cloudLatencyMs: null,
  slmTokenId: index,
});

function mountTmpfs(size: string): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), "tandem-full-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
    return dir;
  } catch {
    return null;
  }
}
const canMount = (() => {
  const d = mountTmpfs("64k");
  if (d) execFileSync("umount", [d]);
  else console.log("hostileWrites: skipping the full-disk tests: cannot mount a tmpfs here (needs root)");
  return !!d;
})();

/** Fills the file system of `dir` completely; returns a function that frees the space again. */
function fill(dir: string): () => void {
  const filler = path.join(dir, "filler");
  const chunk = Buffer.alloc(4096, 1);
  let size = 0;
  try {
    for (;;) {
      writeFileSync(filler, chunk, { flag: "a" });
      size += chunk.length;
    }
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
  }
  expect(size).toBeGreaterThan(0);
  return () => rmSync(filler);
}

describe.skipIf(!canMount)("a full disk under the store (issue 16, class 2)", () => {
  let mnt: string;
  beforeAll(() => {
    mnt = mountTmpfs("1m")!;
  });
  afterAll(() => execFileSync("umount", [mnt]));

  it("every write fails cleanly, memory stays as the disk has it, and all works again once space returns", async () => {
    const s = await ConversationStore.open(mnt);
    const c = await s.create("Before");
    const msg = { id: "a1", role: "assistant" as const, content: "", createdAt: 1, tokens: [] as ReturnType<typeof token>[] };
    c.messages.push(msg);
    await s.save(c.id);
    // as the service does: the token joins the message in memory, then its journal line is written
    const add = (t: ReturnType<typeof token>) => {
      msg.tokens.push(t);
      msg.content += t.text;
      return s.appendToken(c.id, "a1", t);
    };
    await add(token(0, "A"));
    const journal = path.join(mnt, "conversations", `${c.id}${JOURNAL_EXT}`);
    const journalSize = statSync(journal).size;
    const free = fill(mnt);

    await expect(s.create("Full")).rejects.toThrow(/ENOSPC/);
    expect(s.list().map((m) => m.title)).toEqual(["Before"]);
    await expect(s.rename(c.id, "Renamed")).rejects.toThrow(/ENOSPC/);
    expect(s.get(c.id).title).toBe("Before");
    // a token line bigger than any free block left: the append fails and leaves no torn line behind
    await expect(add(token(1, "B".repeat(64 * 1024)))).rejects.toThrow(/ENOSPC/);
    expect(statSync(journal).size).toBe(journalSize);

    free();
    msg.tokens.pop(); // the service drops nothing; here the oversized token is simply replaced
    await add(token(1, "B"));
    expect((await s.create("After")).title).toBe("After");
    await s.rename(c.id, "Renamed");
    await s.flush();
    const again = await ConversationStore.open(mnt);
    expect(again.notices).toEqual([]);
    expect(
      again
        .list()
        .map((m) => m.title)
        .sort(),
    ).toEqual(["After", "Renamed"]);
    expect(again.get(c.id).messages[0].tokens!.map((t) => t.text)).toEqual(["A", "B"]);
  });

  it.skipIf(!pair)(
    "the engine refuses a message whose start cannot be saved, then answers once there is room",
    async () => {
      const dataDir = path.join(mnt, "engine");
      const service = await TandemService.start({ dataDir, slm: pair!.slm, maxTokens: 5, contextSize: 256, selfDistill: false });
      try {
        const c = await service.createConversation({});
        const free = fill(mnt);
        await expect(service.send({ requestId: "r1", conversationId: c.id, text: "Once upon a time" })).rejects.toThrow(
          /Could not save the conversation, so the answer was not started \(ENOSPC/,
        );
        expect((await service.snapshot()).activeRequest).toBeNull();
        expect((await service.getConversation({ id: c.id })).messages).toEqual([]);
        expect((await service.stop({ requestId: "r1" })).stopped).toBe(false);
        free();
        const ended = new Promise<BridgeEvent>((resolve) =>
          service.subscribe((e) => (e.type === "answer-end" || e.type === "answer-error") && resolve(e)),
        );
        await service.send({ requestId: "r2", conversationId: c.id, text: "Once upon a time" });
        expect((await ended).type).toBe("answer-end");
        const saved = JSON.parse(readFileSync(path.join(dataDir, "conversations", `${c.id}.json`), "utf8"));
        expect(saved.conversation.messages.map((m: { role: string }) => m.role)).toEqual(["user", "assistant"]);
      } finally {
        await service.close();
      }
    },
    120_000,
  );
});

describe.skipIf(!pair)("validate first, change after (issue 16, class 6)", () => {
  it("regenerate and edit refused for an invalid argument drop nothing, in memory or on disk", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "tandem-validate-"));
    const service = await TandemService.start({ dataDir, slm: pair!.slm, maxTokens: 4, contextSize: 256, selfDistill: false });
    try {
      const c = await service.createConversation({});
      const ended = new Promise<void>((resolve) => service.subscribe((e) => e.type === "answer-end" && resolve()));
      await service.send({ requestId: "r1", conversationId: c.id, text: "Once upon a time" });
      await ended;
      const before = await service.getConversation({ id: c.id });
      const snapshot = JSON.stringify(before);
      const user = before.messages[0];
      const refused: [string, () => Promise<unknown>, RegExp][] = [
        ["regenerate, empty request id", () => service.regenerate({ requestId: "", conversationId: c.id }), /Invalid request id/],
        [
          "regenerate, 500-char request id",
          () => service.regenerate({ requestId: "x".repeat(500), conversationId: c.id }),
          /Invalid request id/,
        ],
        [
          "regenerate, request id not a string",
          () => service.regenerate({ requestId: 42 as unknown as string, conversationId: c.id }),
          /Invalid request id/,
        ],
        [
          "edit, empty request id",
          () => service.editAndResend({ requestId: "", conversationId: c.id, messageId: user.id, text: "new" }),
          /Invalid request id/,
        ],
        [
          "edit, empty text",
          () => service.editAndResend({ requestId: "e1", conversationId: c.id, messageId: user.id, text: "  " }),
          /Empty message/,
        ],
        [
          "edit, no such message",
          () => service.editAndResend({ requestId: "e2", conversationId: c.id, messageId: "nope", text: "new" }),
          /No such message/,
        ],
        ["send, empty request id", () => service.send({ requestId: "", conversationId: c.id, text: "hello" }), /Invalid request id/],
      ];
      for (const [what, op, error] of refused) {
        await expect(op(), what).rejects.toThrow(error);
        expect(JSON.stringify(await service.getConversation({ id: c.id })), what).toBe(snapshot);
      }
      // and the next save (a rename) persists the conversation whole
      await service.renameConversation({ id: c.id, title: "Kept" });
      const saved = JSON.parse(readFileSync(path.join(dataDir, "conversations", `${c.id}.json`), "utf8"));
      expect(saved.conversation.messages).toEqual(before.messages);
    } finally {
      await service.close();
    }
  }, 120_000);
});
