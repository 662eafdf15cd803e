// `r3gpu index`, `r3gpu search` and `r3gpu eval`: a LanceDB index of Search-R3 embeddings, queried and evaluated.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { describeSkipped } from "../search/corpus.ts";
import { readBeir, runQueries } from "../search/eval.ts";
import { indexCorpus, type IndexOptions, type IndexReport } from "../search/indexing.ts";
import { IndexLock } from "../search/lock.ts";
import { modelIdentity } from "../search/model-identity.ts";
import { searchQuery } from "../search/query.ts";
import { indexSettings, resolveChunking, searchR3Options } from "../search/settings.ts";
import { SearchIndex } from "../search/store.ts";
import { evaluateRun } from "../search/metrics.ts";
import { perQuerySvg } from "../search/plot.ts";
import { SearchR3, type Reasoning, type SearchR3Options, type Truncation } from "../search/searchr3.ts";
import type { EvalArgs, IndexArgs, IndexingFlags, KernelFlags, SearchArgs } from "./commands.ts";
import { Interrupt } from "./interrupt.ts";
import { withLoadProgress } from "./load.ts";
import { Progress } from "./progress.ts";

/** Loads the model for SearchR3, after checking, where an index exists, that it is the index's model. */
async function loadSearchR3(modelPath: string, options: SearchR3Options, db: string, flags: KernelFlags) {
  const dir = nodeModelDir(modelPath);
  const identity = await modelIdentity(dir);
  // Checked before the weights load, which can take a while.
  if (await SearchIndex.readSettings(db)) (await SearchIndex.open(db)).checkModel(identity);
  const { device } = await nodeGpu();
  const r3 = await withLoadProgress(flags, (load) => SearchR3.load(device, dir, { ...options, model: load }));
  return { r3, identity };
}

type BuildOptions = Pick<IndexOptions, "include" | "exclude" | "prune">;

/**
 * Takes the index's lock, loads the model, opens (or creates) the index with the settings the flags give, and
 * indexes `corpus` into it. A first SIGINT or SIGTERM stops the indexing at the next batch, keeping what is
 * embedded (`interrupted` then holds the exit code); during the load, it exits at once.
 */
async function buildIndex(modelPath: string, corpus: string, db: string, flags: IndexingFlags & KernelFlags, opts: BuildOptions = {}) {
  const maxLength = flags["max-length"];
  if (!existsSync(corpus)) throw new Error(`${corpus}: no such corpus file or folder`);
  const lock = await IndexLock.acquire(db, (message) => console.error(`r3gpu: ${message}`));
  let indexing = false;
  const interrupt = new Interrupt((signal) => {
    if (!indexing) void lock.release().finally(() => process.exit(interrupt.exitCode));
    else console.error(`\nr3gpu: ${signal}: storing what is embedded, then stopping (send it again to stop at once)`);
  });
  try {
    let truncated = 0;
    const { r3, identity } = await loadSearchR3(modelPath, {
      maxLength, batchSize: flags["batch-size"], documentSystem: flags["document-system"], querySystem: flags["query-system"],
      onWarning: () => truncated++,
    }, db, flags);
    const chunking = resolveChunking(r3, { chunkTokens: flags["chunk-tokens"], chunkOverlap: flags.overlap });
    const index = await SearchIndex.open(db, { create: indexSettings(r3, identity, chunking) });

    let bar: Progress | undefined;
    indexing = true;
    const report = await indexCorpus(r3, index, corpus, {
      ...opts, lock, signal: interrupt.signal, batchChunks: flags.batch,
      onProgress: (p) => {
        bar ??= new Progress("indexing", { logEvery: flags["progress-every"] });
        const rate = (n: number) => (p.seconds > 0 ? n / p.seconds : 0);
        bar.update(p.done, p.total, "", `${rate(p.done).toFixed(2)} docs/s ${rate(p.tokens).toFixed(0)} tok/s`);
      },
    });
    bar?.done();
    const skipped = describeSkipped(report.skippedFiles);
    if (skipped) console.error(`${corpus}: ${skipped}`);
    if (truncated > 0) console.error(`warning: ${truncated} chunk(s) were cut to fit --max-length ${maxLength}`);
    return { r3, index, report, interrupted: interrupt.exitCode };
  } finally {
    interrupt.dispose();
    await lock.release();
  }
}

function describeReport(r: IndexReport, db: string): string {
  const rate = (n: number) => (r.seconds > 0 ? n / r.seconds : 0);
  return `embedded ${r.embedded} documents (${r.chunks} chunks, ${r.tokens} tokens) in ${r.seconds.toFixed(1)}s ` +
    `(${rate(r.embedded).toFixed(2)} docs/s, ${rate(r.tokens).toFixed(0)} tok/s); ${r.skipped} already indexed, ` +
    `${r.replaced} replaced, ${r.removed} removed; ${db}: ${r.totalChunks} chunks, ${r.annIndex ? "ANN index" : "exact search"}`;
}

/** What an interrupted run kept, and that the next run goes on from there. */
function describeInterruption(r: IndexReport): string {
  const left = r.documents - r.skipped - r.embedded;
  return `interrupted: the ${r.embedded} documents embedded by this run are stored; ${left} are left, which the same ` +
    "command embeds when run again";
}

export async function index({ positionals, flags }: IndexArgs): Promise<number> {
  const prune = flags.prune ? true : flags["no-prune"] ? false : undefined;
  const { report, interrupted } = await buildIndex(positionals.MODEL_DIR, positionals.CORPUS, flags.db, flags, {
    include: flags.include, exclude: flags.exclude, prune,
  });
  console.log(describeReport(report, flags.db));
  if (interrupted === undefined) return 0;
  console.error(`r3gpu index: ${describeInterruption(report)}`);
  return interrupted;
}

/** Whether the model wrote the embed token, and whether anything was cut: said after the reasoning. */
function describeReasoning(r: Reasoning): string {
  const end = r.emittedEmbedToken ? "the model wrote <|embed_token|>"
    : `the model did not write <|embed_token|> (${r.stopReason}), so the suffix was appended`;
  return `(${r.generation.ids.length} tokens of reasoning; ${end}${r.truncations.length > 0 ? "; text was cut to fit --max-length" : ""})`;
}

export async function search({ positionals, flags }: SearchArgs): Promise<number> {
  const { db, k, json, exact, hybrid, "max-new-tokens": maxNewTokens } = flags;
  const reasoning = !flags["no-reasoning"];
  const settings = await SearchIndex.readSettings(db);
  if (!settings) throw new Error(`${db}: no index here (build one with \`r3gpu index\`)`);
  const index = await SearchIndex.open(db);
  // Refused before the model loads.
  if (hybrid) await index.checkFullTextIndex();
  // The query's truncations, whether or not it is reasoned about (encode warns of those of an unreasoned query).
  const truncations: Truncation[] = [];
  const { r3 } = await loadSearchR3(positionals.MODEL_DIR, {
    ...searchR3Options(settings), batchSize: flags["batch-size"], onWarning: (message, t) => {
      truncations.push(t);
      console.error(`warning: ${message}`);
    },
  }, db, flags);

  const out = json ? process.stderr : process.stdout;
  const query = positionals.QUESTION;
  const result = await searchQuery(r3, index, query, { k, reasoning, maxNewTokens, exact, hybrid, onText: (text) => out.write(text) });
  if (result.reasoning) out.write(`\n\n${describeReasoning(result.reasoning)}\n\n`);
  if (json) {
    const r = result.reasoning;
    console.log(JSON.stringify({
      query,
      reasoning: r?.reasoning ?? null,
      emitted_embed_token: r?.emittedEmbedToken ?? null,
      stop_reason: r?.stopReason ?? null,
      truncated: (r?.truncations ?? truncations).length > 0,
      results: result.hits.map((h, i) => ({ rank: i + 1, ...h })),
    }));
    return 0;
  }
  result.hits.forEach((h, i) => {
    const snippet = h.text.replace(/\s+/g, " ").trim();
    const ranks = h.ranks && ` [vector ${h.ranks.vector ?? "-"}, text ${h.ranks.text ?? "-"}]`;
    console.log(`${String(i + 1).padStart(3)}. ${h.score.toFixed(4)}  ${h.id}  (${h.source})${ranks ?? ""}`);
    console.log(`      ${snippet.length > 160 ? `${snippet.slice(0, 159)}…` : snippet}`);
  });
  if (result.hits.length === 0) console.log("(the index is empty)");
  return 0;
}

export async function evaluate({ positionals, flags }: EvalArgs): Promise<number> {
  const { beir, split, limit, json, exact, hybrid, "max-new-tokens": maxNewTokens } = flags;
  const reasoning = !flags["no-reasoning"];
  const dataset = await readBeir(beir, split);
  const queries = dataset.queries.slice(0, limit);

  // Without --db the index lives only as long as the evaluation.
  const db = flags.db ?? (await mkdtemp(join(tmpdir(), "r3gpu-eval-")));
  try {
    const { r3, index, report, interrupted } = await buildIndex(positionals.MODEL_DIR, beir, db, flags);
    console.error(describeReport(report, db));
    if (interrupted !== undefined) {
      console.error(`r3gpu eval: ${flags.db === undefined ? "interrupted while indexing" : describeInterruption(report)}`);
      return interrupted;
    }
    const bar = new Progress("queries", { logEvery: flags["progress-every"] });
    const reasoned = { emitted: 0, appended: 0, truncated: 0 };
    const run = await runQueries(r3, index, queries, {
      reasoning, maxNewTokens, exact, hybrid, onQuery: (done, total) => bar.update(done, total),
      onReasoning: (r) => {
        reasoned[r.emittedEmbedToken ? "emitted" : "appended"]++;
        if (r.truncations.length > 0) reasoned.truncated++;
      },
    });
    bar.done();
    const { metrics, perQuery } = evaluateRun(dataset.qrels, run);
    for (const [name, value] of Object.entries(metrics)) console.log(`${name.padEnd(12)}${value.toFixed(4)}`);
    console.log(`(${Object.keys(perQuery).length} queries, split ${split}, ${report.documents} documents in ` +
      `${report.totalChunks} chunks, query reasoning ${reasoning ? "on" : "off"}, ${hybrid ? "hybrid: vector + full-text, " +
      "reciprocal rank fusion" : "vector search"})`);
    if (reasoning) {
      console.log(`(reasoning: the model wrote <|embed_token|> for ${reasoned.emitted} queries; the suffix was appended to ` +
        `${reasoned.appended}, after at most ${maxNewTokens} tokens; ${reasoned.truncated} were cut to fit --max-length)`);
    }
    if (json !== undefined) {
      await writeFile(json, JSON.stringify({ metrics, run }) + "\n");
      console.error(`wrote ${json}`);
    }
    const plot = flags.plot ?? (json === undefined ? undefined : json.replace(/(\.json)?$/i, ".svg"));
    if (plot !== undefined) {
      const ndcg = Object.fromEntries(Object.entries(perQuery).map(([qid, m]) => [qid, m["ndcg@10"]]));
      await writeFile(plot, perQuerySvg(ndcg, { title: `${beir} (${split})`, measure: "nDCG@10" }));
      console.error(`wrote ${plot}`);
    }
  } finally {
    if (flags.db === undefined) await rm(db, { recursive: true, force: true });
  }
  return 0;
}
