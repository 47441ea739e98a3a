import { defineConfig } from "vitest/config";

// The UI tests: one browser, real child processes; one file at a time on a 2-core machine.
export default defineConfig({
  test: {
    include: ["e2e/**/*.spec.ts"],
    root: new URL("..", import.meta.url).pathname,
    pool: "forks",
    poolOptions: { forks: { singleFork: true } },
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
