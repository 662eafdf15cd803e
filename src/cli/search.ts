// `r3gpu index`, `r3gpu search` and `r3gpu eval`: a LanceDB index of Search-R3 embeddings, queried and evaluated.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { readBeir, runQueries } from "../search/eval.ts";
import { indexCorpus, type IndexReport } from "../search/indexing.ts";
import { searchQuery } from "../search/query.ts";
import { indexSettings, modelIdentity, resolveChunking, searchR3Options } from "../search/settings.ts";
import { SearchIndex } from "../search/store.ts";
import { evaluateRun } from "../search/metrics.ts";
import { perQuerySvg } from "../search/plot.ts";
import { SearchR3, type SearchR3Options } from "../search/searchr3.ts";
import { UsageError } from "./args.ts";
import { Progress, withLoadProgress } from "./progress.ts";

function parse<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O, positionals: number, usage: string) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true } as const);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`${usage} (got ${parsed.positionals.length} positional argument(s))`);
  }
  return parsed;
}

function integer(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer >= ${min}, got "${value}"`);
  return n;
}

/** Loads the model for SearchR3, after checking, where an index exists, that it is the index's model. */
async function loadSearchR3(modelPath: string, options: SearchR3Options, db: string) {
  const dir = nodeModelDir(modelPath);
  const identity = await modelIdentity(dir);
  // Checked before the weights load, which can take a while.
  if (await SearchIndex.readSettings(db)) (await SearchIndex.open(db)).checkModel(identity);
  const { device } = await nodeGpu();
  const r3 = await withLoadProgress((onProgress) => SearchR3.load(device, dir, { ...options, model: { onProgress } }));
  return { r3, identity };
}

const CHUNKING_OPTIONS = {
  "max-length": { type: "string", default: "1024" },
  "chunk-tokens": { type: "string" },
  overlap: { type: "string" },
  batch: { type: "string", default: "64" },
  "document-system": { type: "string" },
  "query-system": { type: "string" },
} as const;

type ChunkingValues = { [K in keyof typeof CHUNKING_OPTIONS]?: string };

/** Loads the model, opens (or creates) the index with the settings the flags give, and indexes `corpus` into it. */
async function buildIndex(modelPath: string, corpus: string, db: string, values: ChunkingValues) {
  const maxLength = integer(values["max-length"], "--max-length", 2)!;
  const chunkTokens = integer(values["chunk-tokens"], "--chunk-tokens", 1);
  const overlap = integer(values.overlap, "--overlap", 0);
  const batchChunks = integer(values.batch, "--batch", 1);
  if (!existsSync(corpus)) throw new Error(`${corpus}: no such corpus file or folder`);
  let truncated = 0;
  const { r3, identity } = await loadSearchR3(modelPath, {
    maxLength, documentSystem: values["document-system"], querySystem: values["query-system"], onWarning: () => truncated++,
  }, db);
  const chunking = resolveChunking(r3, { chunkTokens, chunkOverlap: overlap });
  const index = await SearchIndex.open(db, { create: indexSettings(r3, identity, chunking) });

  let bar: Progress | undefined;
  const report = await indexCorpus(r3, index, corpus, {
    batchChunks,
    onProgress: (p) => {
      bar ??= new Progress("indexing");
      const rate = (n: number) => (p.seconds > 0 ? n / p.seconds : 0);
      bar.update(p.done, p.total, "", `${rate(p.done).toFixed(2)} docs/s ${rate(p.tokens).toFixed(0)} tok/s`);
    },
  });
  bar?.done();
  if (truncated > 0) console.error(`warning: ${truncated} chunk(s) were cut to fit --max-length ${maxLength}`);
  return { r3, index, report };
}

function describeReport(r: IndexReport, db: string): string {
  const rate = (n: number) => (r.seconds > 0 ? n / r.seconds : 0);
  return `embedded ${r.embedded} documents (${r.chunks} chunks, ${r.tokens} tokens) in ${r.seconds.toFixed(1)}s ` +
    `(${rate(r.embedded).toFixed(2)} docs/s, ${rate(r.tokens).toFixed(0)} tok/s); ${r.skipped} already indexed, ` +
    `${r.replaced} replaced; ${db}: ${r.totalChunks} chunks, ${r.annIndex ? "ANN index" : "exact search"}`;
}

export async function index(args: string[]): Promise<number> {
  const { positionals, values } = parse(args, { db: { type: "string" }, ...CHUNKING_OPTIONS }, 2,
    "index takes MODEL_DIR and CORPUS");
  if (values.db === undefined) throw new UsageError("index needs --db DB_DIR");
  const { report } = await buildIndex(positionals[0], positionals[1], values.db, values);
  console.log(describeReport(report, values.db));
  return 0;
}

const QUERY_OPTIONS = {
  "no-reasoning": { type: "boolean" },
  "max-new-tokens": { type: "string" },
  exact: { type: "boolean" },
} as const;

export async function search(args: string[]): Promise<number> {
  const { positionals, values } = parse(args, {
    db: { type: "string" }, k: { type: "string", short: "k", default: "10" }, json: { type: "boolean" }, ...QUERY_OPTIONS,
  }, 2, "search takes MODEL_DIR and the question");
  if (values.db === undefined) throw new UsageError("search needs --db DB_DIR");
  const k = integer(values.k, "-k", 1)!;
  const maxNewTokens = integer(values["max-new-tokens"], "--max-new-tokens", 0);
  const reasoning = !values["no-reasoning"];
  const settings = await SearchIndex.readSettings(values.db);
  if (!settings) throw new Error(`${values.db}: no index here (build one with \`r3gpu index\`)`);
  const { r3 } = await loadSearchR3(positionals[0], searchR3Options(settings), values.db);
  const index = await SearchIndex.open(values.db);

  const out = values.json ? process.stderr : process.stdout;
  const result = await searchQuery(r3, index, positionals[1], {
    k, reasoning, maxNewTokens, exact: values.exact, onText: (text) => out.write(text),
  });
  if (reasoning) out.write("\n\n");
  if (values.json) {
    console.log(JSON.stringify({
      query: positionals[1],
      reasoning: result.reasoning?.reasoning ?? null,
      results: result.hits.map((h, i) => ({ rank: i + 1, ...h })),
    }));
    return 0;
  }
  result.hits.forEach((h, i) => {
    const snippet = h.text.replace(/\s+/g, " ").trim();
    console.log(`${String(i + 1).padStart(3)}. ${h.score.toFixed(4)}  ${h.id}  (${h.source})`);
    console.log(`      ${snippet.length > 160 ? `${snippet.slice(0, 159)}…` : snippet}`);
  });
  if (result.hits.length === 0) console.log("(the index is empty)");
  return 0;
}

export async function evaluate(args: string[]): Promise<number> {
  const { positionals, values } = parse(args, {
    beir: { type: "string" }, split: { type: "string", default: "test" }, limit: { type: "string" },
    json: { type: "string" }, plot: { type: "string" }, db: { type: "string" }, ...CHUNKING_OPTIONS, ...QUERY_OPTIONS,
  }, 1, "eval takes MODEL_DIR");
  if (values.beir === undefined) throw new UsageError("eval needs --beir DIR");
  const limit = integer(values.limit, "--limit", 1);
  const maxNewTokens = integer(values["max-new-tokens"], "--max-new-tokens", 0);
  const reasoning = !values["no-reasoning"];
  const dataset = await readBeir(values.beir, values.split);
  const queries = dataset.queries.slice(0, limit);

  // Without --db the index lives only as long as the evaluation.
  const db = values.db ?? (await mkdtemp(join(tmpdir(), "r3gpu-eval-")));
  try {
    const { r3, index, report } = await buildIndex(positionals[0], values.beir, db, values);
    console.error(describeReport(report, db));
    const bar = new Progress("queries");
    const run = await runQueries(r3, index, queries, {
      reasoning, maxNewTokens, exact: values.exact, onQuery: (done, total) => bar.update(done, total),
    });
    bar.done();
    const { metrics, perQuery } = evaluateRun(dataset.qrels, run);
    for (const [name, value] of Object.entries(metrics)) console.log(`${name.padEnd(12)}${value.toFixed(4)}`);
    console.log(`(${Object.keys(perQuery).length} queries, split ${values.split}, ${report.documents} documents in ` +
      `${report.totalChunks} chunks, query reasoning ${reasoning ? "on" : "off"})`);
    if (values.json !== undefined) {
      await writeFile(values.json, JSON.stringify({ metrics, run }) + "\n");
      console.error(`wrote ${values.json}`);
    }
    const plot = values.plot ?? (values.json === undefined ? undefined : values.json.replace(/(\.json)?$/i, ".svg"));
    if (plot !== undefined) {
      const ndcg = Object.fromEntries(Object.entries(perQuery).map(([qid, m]) => [qid, m["ndcg@10"]]));
      await writeFile(plot, perQuerySvg(ndcg, { title: `${values.beir} (${values.split})`, measure: "nDCG@10" }));
      console.error(`wrote ${plot}`);
    }
  } finally {
    if (values.db === undefined) await rm(db, { recursive: true, force: true });
  }
  return 0;
}
