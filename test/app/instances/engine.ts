/**
 * A child process for hostileInstances.test.ts: starts the engine service on the data folder given as
 * argv[2] (no model), prints "started" or "refused <message>", then holds the folder until stdin closes.
 */
import { TandemService } from "../../../electron/engine/service.js";
import { errorMessage } from "../../../shared/errors.js";

const dataDir = process.argv[2]!;
try {
  const service = await TandemService.start({ dataDir, slm: null, selfDistill: false });
  const c = await service.createConversation({ title: `from ${process.pid}` });
  console.log(`started ${c.id}`);
  process.stdin.resume();
  process.stdin.on("end", () => void service.close().then(() => process.exit(0)));
} catch (err) {
  console.log(`refused ${errorMessage(err)}`);
  process.exit(3);
}
