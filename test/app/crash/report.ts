/**
 * The crash test children's report channel: a line is in the pipe before the next instruction runs.
 * `process.stdout.write` does not promise that: when the parent reads slowly (a loaded machine), Node
 * queues the line in the child's memory and goes on, and a SIGKILL then loses lines of operations
 * that did reach the disk (measured: ~470 KB queued behind a paused reader). So each line is written
 * with `writeSync` on fd 1, retried while the pipe is full.
 */
import { writeSync } from "node:fs";

const pause = new Int32Array(new SharedArrayBuffer(4));

export function say(line: string): void {
  const bytes = Buffer.from(line + "\n", "utf8");
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(1, bytes, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 1); // the pipe is full: wait a millisecond for the parent to read
    }
  }
}
