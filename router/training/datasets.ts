/**
 * Dataset adapters: turn a benchmark row into a user message and check a generated answer.
 * Formats are those of ../shared/data (see its README). Multiple-choice answers are read as the first
 * standalone choice letter of the answer; GSM8K answers as the last number.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Rng } from "../../shared/prng.js";
import { defaultSharedDir } from "./text.js";

export interface TaskItem {
  id: string;
  /** the user message (the SLM's chat template, if any, wraps it) */
  message: string;
  /** true when the answer text is correct */
  check: (answer: string) => boolean;
  /** a reference answer text, when the dataset has one (labels with rule 3/4) */
  reference?: string;
}

export interface Dataset {
  name: string;
  file: string;
  /** tokens an answer may take */
  maxTokens: number;
  parse: (row: unknown, i: number) => TaskItem;
}

const LETTERS = "ABCDEFGHIJ";

function mcMessage(question: string, choices: { label: string; text: string }[]): string {
  return `${question.trim()}\n${choices.map((c) => `${c.label}. ${c.text}`).join("\n")}\nAnswer with the letter of the correct choice.`;
}

/** The first standalone choice label in the answer ("B", "(B)", "B.", "answer is B"). */
export function readChoice(answer: string, labels: readonly string[]): string | null {
  const alts = labels.map((l) => l.replace(/[^A-Za-z0-9]/g, "")).join("|");
  const m = new RegExp(`(?:^|[^A-Za-z0-9])(${alts})(?![A-Za-z0-9])`).exec(answer);
  return m ? m[1]! : null;
}

/** The last number in a text, commas and a trailing period removed. */
export function lastNumber(text: string): string | null {
  const all = text.replace(/(\d),(\d)/g, "$1$2").match(/-?\d+(?:\.\d+)?/g);
  if (!all) return null;
  return String(Number(all[all.length - 1]));
}

function mcItem(id: string, question: string, choices: { label: string; text: string }[], key: string): TaskItem {
  const labels = choices.map((c) => c.label);
  return {
    id,
    message: mcMessage(question, choices),
    check: (a) => readChoice(a, labels) === key,
    reference: `${key}. ${choices.find((c) => c.label === key)?.text ?? ""}`,
  };
}

export const DATASETS: Record<string, Omit<Dataset, "file"> & { fileName: string }> = {
  csqa: {
    name: "CommonsenseQA (dev)",
    fileName: "csqa_dev_rand_split.jsonl",
    maxTokens: 16,
    parse: (r, i) => {
      const row = r as { id?: string; answerKey: string; question: { stem: string; choices: { label: string; text: string }[] } };
      return mcItem(row.id ?? String(i), row.question.stem, row.question.choices, row.answerKey);
    },
  },
  // training split, for router labels (evaluate on "csqa", the dev split)
  "csqa-train": {
    name: "CommonsenseQA (train)",
    fileName: "csqa_train_rand_split.jsonl",
    maxTokens: 16,
    parse: (r, i) => {
      const row = r as { id?: string; answerKey: string; question: { stem: string; choices: { label: string; text: string }[] } };
      return mcItem(row.id ?? String(i), row.question.stem, row.question.choices, row.answerKey);
    },
  },
  "arc-easy": {
    name: "ARC-Easy (validation)",
    fileName: "arc_ARC-Easy-validation.jsonl",
    maxTokens: 16,
    parse: (r, i) => arcItem(r, i),
  },
  "arc-challenge": {
    name: "ARC-Challenge (validation)",
    fileName: "arc_ARC-Challenge-validation.jsonl",
    maxTokens: 16,
    parse: (r, i) => arcItem(r, i),
  },
  gsm8k: {
    name: "GSM8K (test)",
    fileName: "gsm8k_test.jsonl",
    maxTokens: 256,
    parse: (r, i) => {
      const row = r as { question: string; answer: string };
      const gold = lastNumber(row.answer.split("####").pop() ?? "");
      return {
        id: String(i),
        message: `${row.question.trim()}\nSolve it step by step, then finish with "The answer is N".`,
        check: (a) => gold != null && lastNumber(a) === gold,
        reference: row.answer.replace(/<<[^>]*>>/g, "").replace(/####\s*/, "The answer is "),
      };
    },
  },
  truthfulqa: {
    name: "TruthfulQA MC1 (200)",
    fileName: "edgechal_truthfulQA_MC_200_samples.jsonl",
    maxTokens: 16,
    parse: (r, i) => {
      const row = r as { question: string; mc1_targets: Record<string, number> };
      // the correct target comes first in the file: shuffle (seeded per row) so position tells nothing
      const opts = new Rng(1000 + i).shuffle(Object.entries(row.mc1_targets));
      const choices = opts.map(([text], k) => ({ label: LETTERS[k]!, text }));
      const key = LETTERS[opts.findIndex(([, v]) => v === 1)]!;
      return mcItem(String(i), row.question, choices, key);
    },
  },
};

function arcItem(r: unknown, i: number): TaskItem {
  const row = r as { id?: string; question: string; choices: { text: string[]; label: string[] }; answerKey: string };
  const choices = row.choices.label.map((label, k) => ({ label, text: row.choices.text[k]! }));
  return mcItem(row.id ?? String(i), row.question, choices, row.answerKey);
}

export function loadDataset(
  name: string,
  limit: number,
  dataDir = path.join(defaultSharedDir(), "data"),
): { dataset: Dataset; items: TaskItem[] } {
  const d = DATASETS[name];
  if (!d) throw new Error(`Unknown dataset "${name}" (known: ${Object.keys(DATASETS).join(", ")})`);
  const file = path.join(dataDir, d.fileName);
  if (!fs.existsSync(file)) throw new Error(`Dataset file ${file} not found (../shared/data)`);
  const lines = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim());
  const items = lines.slice(0, limit).map((l, i) => d.parse(JSON.parse(l), i));
  return { dataset: { ...d, file }, items };
}
