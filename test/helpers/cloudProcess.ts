/** The cloud token server as a real child process (`npm run cloud`), so a test can SIGKILL it. */
import { spawn } from "node:child_process";
import path from "node:path";
import { repoRoot } from "./shared.js";

export async function startCloudProcess(model: string, token: string): Promise<{ url: string; kill(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(repoRoot, "cloud", "main.ts"), "--model", model, "--port", "0", "--token", token],
    {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TANDEM_THREADS: "1" },
    },
  );
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cloud process did not start: ${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = out.match(/https?:\/\/127\.0\.0\.1:\d+/);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`cloud process exited (${code}): ${out}`)));
  });
  return {
    url,
    kill: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.once("exit", () => r());
        child.kill("SIGKILL");
      }),
  };
}
