/**
 * Child process of the service crash test (crash.test.ts): the real engine service with a real model
 * answering one message after another until it is killed. Prints "ready" once started, and for every
 * batch of tokens the service pushes to its subscribers (what a UI would show)
 * "D <conversation> <message> <tokens so far>".
 *
 *   node serviceWriter.mjs <dataDir> <slm.gguf>
 */
import { TandemService } from "../../../electron/engine/service.js";
import { say } from "./report.js";

const [dataDir, slm] = process.argv.slice(2);
const service = await TandemService.start({ dataDir, slm, tau: 0.5, maxTokens: 400, contextSize: 1024, paceMs: 0 });
let answered: () => void = () => {};
service.subscribe((e) => {
  if (e.type === "answer-delta") say(`D ${e.conversationId} ${e.messageId} ${e.tokens[e.tokens.length - 1].index + 1}`);
  if (e.type === "answer-end" || e.type === "answer-error") answered();
});
say("ready");
const prompts = ["Once upon a time", "The little dog", "Lily went", "One day"];
for (let i = 0; ; i++) {
  // one conversation per answer keeps every prompt inside the tiny model's context
  const conv = await service.createConversation({});
  const done = new Promise<void>((r) => (answered = r));
  await service.send({ requestId: `r${i}`, conversationId: conv.id, text: prompts[i % prompts.length] });
  await done;
}
