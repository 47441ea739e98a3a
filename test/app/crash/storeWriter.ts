/**
 * Child process of the crash test (crash.test.ts): writes conversations through ConversationStore
 * exactly as the engine service does (electron/engine/service.ts), until it is killed with SIGKILL.
 *
 *   send        push the user message and an empty assistant message, snapshot   (startAnswer)
 *   each token  push it to the message in memory, append it to the journal        (runAnswer)
 *   end         set the final text, summary and status, snapshot                  (runAnswer)
 *   regenerate  drop the trailing answers, then as send without a new user message
 *   create / rename / delete                                                       (the bridge ops)
 *
 * Every store operation is reported on stdout twice, synchronously (report.ts: a line printed is in
 * the pipe before the next instruction runs):
 *   "I <op> ..."  before it starts — the operation in flight, whose effect may or may not be on disk;
 *   "C <op> ..."  after its promise resolved — committed: it must survive the kill.
 * Token contents are a pure function of (message id, index) (crashModel.ts), so the parent can check
 * every persisted token byte for byte.
 *
 *   node storeWriter.mjs <dataDir> <seed>
 */
import { randomUUID } from "node:crypto";
import type { StoredMessage } from "../../../shared/bridge.js";
import { ConversationStore } from "../../../electron/engine/conversationStore.js";
import { mulberry32, tokenFor, textOf } from "./crashModel.js";
import { say } from "./report.js";

const [dataDir, seedArg] = process.argv.slice(2);
const rand = mulberry32(Number(seedArg));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

say("loading"); // the parent may kill during the recovery that opening the store does
const store = await ConversationStore.open(dataDir);
say(`open ${store.notices.length}`);

const MAX_CONVERSATIONS = 6;
const MAX_MESSAGES = 24;

for (let n = 0; ; n++) {
  const convs = store.list();
  const r = rand();
  if (convs.length === 0 || (convs.length < MAX_CONVERSATIONS && r < 0.1)) {
    const title = `chat ${seedArg}-${n}`;
    say(`I create ${title}`);
    const c = await store.create(title);
    say(`C create ${c.id} ${title}`);
    continue;
  }
  const conv = store.get(pick(convs).id);
  if (r < 0.14) {
    const title = `renamed ${seedArg}-${n}`;
    say(`I rename ${conv.id} ${title}`);
    await store.rename(conv.id, title);
    say(`C rename ${conv.id} ${title}`);
    continue;
  }
  if (r < 0.17 || conv.messages.length >= MAX_MESSAGES) {
    if (convs.length <= 2) continue;
    say(`I delete ${conv.id}`);
    await store.delete(conv.id);
    say(`C delete ${conv.id}`);
    continue;
  }

  // an answer: send (a new user message) or regenerate (the last answers dropped)
  const regenerate = conv.messages.length > 0 && r < 0.3;
  let drop = 0;
  let userId = "-";
  if (regenerate) {
    while (conv.messages.length && conv.messages[conv.messages.length - 1].role === "assistant") {
      conv.messages.pop();
      drop++;
    }
  } else {
    userId = randomUUID();
    conv.messages.push({ id: userId, role: "user", content: `question ${n}`, createdAt: Date.now() });
  }
  const msg: StoredMessage = { id: randomUUID(), role: "assistant", content: "", createdAt: Date.now(), tokens: [] };
  conv.messages.push(msg);
  conv.updatedAt = Date.now();
  say(`I start ${conv.id} ${drop} ${userId} ${msg.id}`);
  await store.save(conv.id);
  say(`C start ${conv.id} ${drop} ${userId} ${msg.id}`);

  const length = 1 + Math.floor(rand() * 40);
  for (let i = 0; i < length; i++) {
    const ev = tokenFor(msg.id, i);
    msg.tokens!.push(ev);
    msg.content += ev.text;
    say(`I tok ${conv.id} ${msg.id} ${i + 1}`);
    await store.appendToken(conv.id, msg.id, ev);
    say(`C tok ${conv.id} ${msg.id} ${i + 1}`);
  }
  msg.content = textOf(msg.tokens!);
  msg.status = "complete";
  conv.updatedAt = Date.now();
  say(`I end ${conv.id} ${msg.id}`);
  await store.save(conv.id);
  say(`C end ${conv.id} ${msg.id}`);
}
