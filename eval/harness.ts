/**
 * The evaluation: for a set of prompts, every router at every target cloud share, measured two ways.
 *
 *  teacher-forced  along the LLM's greedy continuation of each prompt, the emitted token is the SLM's
 *                  greedy token unless routed (then the LLM's, which is the reference): LLM agreement =
 *                  share of positions where emitted == LLM greedy. Every router is scored on the same
 *                  positions; τ for a share is the share-quantile of the router's scores there.
 *  free-running    decode with routing (both models local, the chosen token fed to both) and score each
 *                  token by the LLM's log-probability; quality = mean per token, and the share of the
 *                  SLM-only → LLM-only gap closed. Learned/confidence routers run at the τ calibrated
 *                  teacher-forced (their free-running share is measured, and the summary interpolates at
 *                  the target shares); random routes each token with probability = share; the oracle
 *                  routes where the SLM's greedy ≠ the LLM's greedy, within a running budget of `share`.
 *
 * With sampling (`EvalOptions.sampling`), free-running decoding draws each token from the model that
 * writes it (shared/sampling.ts, as on the device) and is repeated for every seed: a row's free-running
 * values are their mean over the seeds, with the spread (sample standard deviation) beside them.
 * Teacher-forced values do not depend on sampling. Without it (greedy, eval's default: Precise) every
 * table is as before.
 *
 * Only positions whose preceding `novelN` tokens never occur in the router's training text count.
 */
import type { LocalModel } from "../inference/localModel.js";
import { routesToCloud, type FeatureNeeds, type Router } from "../shared/router.js";
import { decide } from "../shared/routing.js";
import { tauForShare } from "../router/training/collect.js";
import { OracleBudget, oracleAgreement } from "../router/training/labels.js";
import { llmGreedy, runRouted, teacherForce, type RoutePolicy } from "../router/training/pair.js";
import { Rng } from "../shared/prng.js";
import type { NgramIndex } from "../router/training/text.js";
import type { SamplingParams } from "../shared/sampling.js";
import { gapClosed, interpolate, mean, spread } from "./metrics.js";

export const REQUIRED_SHARES = [0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3];

export interface EvalPrompt {
  prompt: number[];
  /** checks the answer text (task accuracy); absent for plain continuation */
  check?: (answer: string) => boolean;
}

export interface EvalRow {
  router: string;
  /** threshold used (NaN for budget-driven baselines: random, oracle) */
  tau: number | null;
  targetShare: number;
  /** teacher-forced cloud share on counted positions */
  cloudShare: number;
  llmAgreement: number;
  /** free-running: measured cloud share, mean LLM log-prob per token, gap closed, accuracy */
  freeCloudShare: number;
  meanLogprob: number;
  logprobGapClosed: number;
  accuracy: number | null;
  cloudCalls: number;
  tokensPerSecond: number;
  /** with sampling: the seeds' count and the spread (standard deviation) of the free-running values over them */
  spread?: { seeds: number; freeCloudShare: number; meanLogprob: number; logprobGapClosed: number; accuracy: number | null };
}

export interface SummaryRow {
  router: string;
  share: number;
  llmAgreement: number | null;
  /** gain over SLM-only as a share of the oracle's gain (teacher-forced) */
  oracleGainShare: number | null;
  logprobGapClosed: number | null;
  accuracy: number | null;
}

export interface EvalResult {
  rows: EvalRow[];
  summary: SummaryRow[];
  counted: { teacherForced: number; teacherForcedAll: number; freeRunningSlmOnly: number };
  disagreementRate: number;
  routerCostMs: Record<string, number>;
}

export interface EvalOptions {
  shares: number[];
  maxTokens: number;
  seed: number;
  index: NgramIndex;
  /** distilled: the confidence router's student (router/training/distill.ts), when one exists for the SLM */
  routers: { confidence: Router; learned: Router | null; distilled?: Router | null };
  /** sample the free-running decodings with these parameters, once per seed (absent or temperature 0: greedy) */
  sampling?: { params: SamplingParams; seeds: readonly number[] };
  detokenize: (tokens: number[]) => string;
  log?: (s: string) => void;
}

/** The routers compared, in table order (slm-only and llm-only are the two ends). */
export const EVAL_ROUTERS = ["random", "confidence", "learned", "distilled", "oracle"] as const;

export async function evaluate(slm: LocalModel, llm: LocalModel, prompts: readonly EvalPrompt[], o: EvalOptions): Promise<EvalResult> {
  const scoreRouters: [string, Router][] = [["confidence", o.routers.confidence]];
  if (o.routers.learned) scoreRouters.push(["learned", o.routers.learned]);
  if (o.routers.distilled) scoreRouters.push(["distilled", o.routers.distilled]);
  const needs: FeatureNeeds = {
    top1Prob: true,
    topK: Math.max(0, ...scoreRouters.map(([, r]) => r.needs.topK)),
    hidden: scoreRouters.some(([, r]) => r.needs.hidden),
  };

  // ---- teacher-forced ------------------------------------------------------------------------
  const disagree: boolean[] = [];
  const scores = new Map<string, number[]>(scoreRouters.map(([n]) => [n, []]));
  const cost = new Map<string, number>(scoreRouters.map(([n]) => [n, 0]));
  let all = 0;
  for (const p of prompts) {
    const ref = await llmGreedy(llm, p.prompt, o.maxTokens);
    if (ref.length < 2) continue;
    const seq = [...p.prompt, ...ref];
    const pos = await teacherForce(slm, llm, seq, p.prompt.length, needs, false);
    pos.forEach((q, j) => {
      all++;
      if (o.index.seen(seq, p.prompt.length + j)) return;
      disagree.push(q.slmTok !== seq[p.prompt.length + j]);
      for (const [n, r] of scoreRouters) {
        const t0 = performance.now();
        scores.get(n)!.push(r.score(q.features));
        cost.set(n, cost.get(n)! + performance.now() - t0);
      }
    });
  }
  const N = disagree.length;
  if (N === 0) throw new Error("No evaluation position has an unseen context: use more or different text, or a larger --novel-ngram");
  const slmAgree = disagree.filter((d) => !d).length / N;
  o.log?.(`teacher-forced: ${N} counted positions of ${all} (unseen contexts), SLM agreement ${(slmAgree * 100).toFixed(1)}%`);

  const tf = new Map<string, { tau: number | null; share: number; agreement: number }>();
  const key = (r: string, s: number) => `${r}@${s}`;
  const rng = new Rng(o.seed);
  for (const s of o.shares) {
    for (const [n] of scoreRouters) {
      const sc = scores.get(n)!;
      const tau = tauForShare(sc, s);
      let routed = 0;
      let agree = 0;
      sc.forEach((c, i) => {
        const r = routesToCloud(c, tau);
        routed += r ? 1 : 0;
        agree += r || !disagree[i] ? 1 : 0;
      });
      tf.set(key(n, s), { tau, share: routed / N, agreement: agree / N });
    }
    let rr = 0;
    let ra = 0;
    disagree.forEach((d) => {
      const r = rng.next() < s;
      rr += r ? 1 : 0;
      ra += r || !d ? 1 : 0;
    });
    tf.set(key("random", s), { tau: null, share: rr / N, agreement: ra / N });
    const or = oracleAgreement(disagree, s);
    tf.set(key("oracle", s), { tau: null, share: or.routed / N, agreement: or.agreement });
  }

  // ---- free-running --------------------------------------------------------------------------
  type Run = { share: number; logprob: number; accuracy: number | null; calls: number; tps: number; counted: number };
  const sampling = o.sampling && o.sampling.params.temperature > 0 ? o.sampling : undefined;
  const seeds: (number | undefined)[] = sampling ? [...sampling.seeds] : [undefined];
  const runAll = async (policyFor: () => RoutePolicy, seed?: number): Promise<Run> => {
    const lps: number[] = [];
    let routedCounted = 0;
    let calls = 0;
    let tokens = 0;
    let correct = 0;
    let checkable = 0;
    const t0 = performance.now();
    for (const p of prompts) {
      const run = { maxTokens: o.maxTokens, slmNeeds: needs, score: true };
      const steps = await runRouted(
        slm,
        llm,
        p.prompt,
        policyFor(),
        seed === undefined ? run : { ...run, sampling: { ...sampling!.params, seed } },
      );
      const seq = [...p.prompt, ...steps.map((s) => s.chosen)];
      steps.forEach((s, j) => {
        tokens++;
        calls += s.routed ? 1 : 0; // the engine makes one cloud call per cloud token
        if (o.index.seen(seq, p.prompt.length + j)) return;
        lps.push(s.llmLogprob);
        routedCounted += s.routed ? 1 : 0;
      });
      if (p.check) {
        checkable++;
        correct += p.check(o.detokenize(steps.map((s) => s.chosen))) ? 1 : 0;
      }
    }
    const secs = (performance.now() - t0) / 1000;
    return {
      share: routedCounted / Math.max(1, lps.length),
      logprob: mean(lps),
      accuracy: checkable ? correct / checkable : null,
      calls,
      tps: tokens / secs,
      counted: lps.length,
    };
  };

  /** a policy's runs, one per seed (one greedy run without sampling) */
  const runSeeds = async (policyFor: () => RoutePolicy): Promise<Run[]> => {
    const runs: Run[] = [];
    for (const seed of seeds) runs.push(await runAll(policyFor, seed));
    return runs;
  };
  const slmOnly = await runSeeds(() => () => false);
  const llmOnly = await runSeeds(() => () => true);
  o.log?.(
    `free-running${sampling ? `, sampled (${seeds.length} seeds)` : ""}: SLM-only mean log-prob ${mean(slmOnly.map((r) => r.logprob)).toFixed(3)}, ` +
      `LLM-only ${mean(llmOnly.map((r) => r.logprob)).toFixed(3)} (${slmOnly[0]!.counted} counted tokens)`,
  );
  const rows: EvalRow[] = [];
  const push = (router: string, s: number, t: { tau: number | null; share: number; agreement: number }, runs: Run[]) =>
    rows.push({
      router,
      tau: t.tau,
      targetShare: s,
      cloudShare: t.share,
      llmAgreement: t.agreement,
      ...freeRunning(runs, slmOnly, llmOnly),
    });
  push("slm-only", 0, { tau: 0, share: 0, agreement: slmAgree }, slmOnly);
  push("llm-only", 1, { tau: 1, share: 1, agreement: 1 }, llmOnly);

  for (const s of o.shares) {
    for (const [n, r] of scoreRouters) {
      const t = tf.get(key(n, s))!;
      push(n, s, t, await runSeeds(() => (p) => decide(r, p.features, t.tau!).toCloud));
    }
    const rrng = new Rng(o.seed * 7919 + Math.round(s * 1000));
    push("random", s, tf.get(key("random", s))!, await runSeeds(() => () => rrng.next() < s));
    push(
      "oracle",
      s,
      tf.get(key("oracle", s))!,
      await runSeeds(() => {
        const b = new OracleBudget(s);
        return (p) => b.route(p.slmTok, p.llmTok);
      }),
    );
    o.log?.(`  share ${(s * 100).toFixed(1)}% done`);
  }

  return {
    rows,
    summary: summarise(rows, REQUIRED_SHARES.filter((s) => o.shares.includes(s)).length ? REQUIRED_SHARES : o.shares),
    counted: { teacherForced: N, teacherForcedAll: all, freeRunningSlmOnly: Math.round(mean(slmOnly.map((r) => r.counted))) },
    disagreementRate: 1 - slmAgree,
    routerCostMs: Object.fromEntries([...cost].map(([n, ms]) => [n, ms / N])),
  };
}

type FreeRunning = Pick<
  EvalRow,
  "freeCloudShare" | "meanLogprob" | "logprobGapClosed" | "accuracy" | "cloudCalls" | "tokensPerSecond" | "spread"
>;

/**
 * A row's free-running values from its runs, one per seed: each seed's gap closed is measured against
 * the same seed's SLM-only and LLM-only runs; the row holds the means and, with several seeds, the spread.
 */
export function freeRunning(
  runs: readonly { share: number; logprob: number; accuracy: number | null; calls: number; tps: number }[],
  slmOnly: readonly { logprob: number }[],
  llmOnly: readonly { logprob: number }[],
): FreeRunning {
  const gaps = runs.map((r, i) => gapClosed(r.logprob, slmOnly[i]!.logprob, llmOnly[i]!.logprob));
  const acc = runs.map((r) => r.accuracy).filter((a): a is number => a !== null);
  const out: FreeRunning = {
    freeCloudShare: mean(runs.map((r) => r.share)),
    meanLogprob: mean(runs.map((r) => r.logprob)),
    logprobGapClosed: mean(gaps),
    accuracy: acc.length ? mean(acc) : null,
    cloudCalls: mean(runs.map((r) => r.calls)),
    tokensPerSecond: mean(runs.map((r) => r.tps)),
  };
  if (runs.length < 2) return out;
  return {
    ...out,
    spread: {
      seeds: runs.length,
      freeCloudShare: spread(runs.map((r) => r.share)),
      meanLogprob: spread(runs.map((r) => r.logprob)),
      logprobGapClosed: spread(gaps),
      accuracy: acc.length ? spread(acc) : null,
    },
  };
}

/**
 * The table at the required shares: teacher-forced values are exact (τ calibrated per share);
 * free-running values are interpolated along each router's measured (share, gap closed) points,
 * anchored at SLM-only (0, 0) and LLM-only (1, 1).
 */
export function summarise(rows: readonly EvalRow[], shares: readonly number[]): SummaryRow[] {
  const slm = rows.find((r) => r.router === "slm-only")!;
  const llm = rows.find((r) => r.router === "llm-only")!;
  const out: SummaryRow[] = [];
  for (const router of EVAL_ROUTERS) {
    const rs = rows.filter((r) => r.router === router);
    if (rs.length === 0) continue;
    const fr = [{ x: 0, y: 0 }, ...rs.map((r) => ({ x: r.freeCloudShare, y: r.logprobGapClosed })), { x: 1, y: 1 }];
    const acc = [
      { x: 0, y: slm.accuracy ?? NaN },
      ...rs.map((r) => ({ x: r.freeCloudShare, y: r.accuracy ?? NaN })),
      { x: 1, y: llm.accuracy ?? NaN },
    ];
    for (const s of shares) {
      const tfRow = rs.find((r) => Math.abs(r.targetShare - s) < 1e-9);
      const oracle = rows.find((r) => r.router === "oracle" && Math.abs(r.targetShare - s) < 1e-9);
      const gain = tfRow && oracle ? (tfRow.llmAgreement - slm.llmAgreement) / (oracle.llmAgreement - slm.llmAgreement) : null;
      out.push({
        router,
        share: s,
        llmAgreement: tfRow?.llmAgreement ?? null,
        oracleGainShare: gain != null && Number.isFinite(gain) ? gain : null,
        logprobGapClosed: interpolate(fr, s),
        accuracy: slm.accuracy == null ? null : interpolate(acc, s),
      });
    }
  }
  return out;
}
