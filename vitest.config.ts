import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // node-llama-cpp is a native addon: separate processes, not worker threads
    pool: "forks",
    // 2-core machines: two files at a time, each model on one thread
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
