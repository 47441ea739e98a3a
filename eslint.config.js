// Lint for the whole tree (`npm run lint`, part of `npm test`). Formatting is Prettier's (`npm run format`).
import js from "@eslint/js";
import { createTypeScriptImportResolver } from "eslint-import-resolver-typescript";
import importX from "eslint-plugin-import-x";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "node_modules/",
      "dist/",
      "models/.fixtures/",
      "models/.scratch/",
      "e2e/artifacts/",
      "bench/results/",
      "eval/results/",
      "router/trained/",
      "**/*.d.ts",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  importX.flatConfigs.typescript,
  {
    settings: {
      "import-x/resolver-next": [createTypeScriptImportResolver({ project: "./tsconfig.json" })],
    },
    languageOptions: { ecmaVersion: 2023, sourceType: "module" },
    rules: {
      "import-x/no-cycle": ["error", { ignoreExternal: true }],
      "import-x/no-self-import": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/no-explicit-any": "error",
      "no-constant-condition": ["error", { checkLoops: false }],
      // TypeScript checks names; the few plain .mjs files (test fakes) run in Node
      "no-undef": "off",
      // what the app loads to score tokens never pulls in the router's training tools; the engine
      // trains only through electron/engine/selfDistill.ts (the distilled router, from the user's answers)
      "import-x/no-restricted-paths": [
        "error",
        {
          zones: [
            {
              target: ["./router/*.ts", "./shared", "./inference", "./cloud", "./cli", "./web", "./renderer"],
              from: "./router/training",
            },
            { target: "./electron/**/!(selfDistill).ts", from: "./router/training" },
          ],
        },
      ],
    },
  },
  {
    // the engine, the server, native inference, what every process shares and the entry points (cli/,
    // web/) read as named steps: no function over ~60 lines (issue 12)
    files: ["electron/**/*.ts", "cloud/**/*.ts", "inference/**/*.ts", "shared/**/*.ts", "cli/**/*.ts", "web/**/*.ts"],
    rules: { "max-lines-per-function": ["error", { max: 60, skipBlankLines: true, skipComments: true }] },
  },
);
