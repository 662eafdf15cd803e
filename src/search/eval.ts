// BEIR evaluation: the dataset's queries and qrels, and a run of queries against an index.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { readJsonl } from "./corpus.ts";
import type { QueryOptions } from "./query.ts";
import type { SearchIndex } from "./store.ts";
import type { Qrels, Run } from "./metrics.ts";
import type { SearchR3 } from "./searchr3.ts";

export interface BeirQuery {
  id: string;
  text: string;
}

export interface BeirDataset {
  /** The queries of the split's qrels, in queries.jsonl order. */
  queries: BeirQuery[];
  qrels: Qrels;
}

/** `dir/queries.jsonl` and `dir/qrels/<split>.tsv`; the corpus (`dir/corpus.jsonl`) is read by the indexer. */
export async function readBeir(dir: string, split = "test"): Promise<BeirDataset> {
  const qrels = parseQrels(await readFile(join(dir, "qrels", `${split}.tsv`), "utf8"), join(dir, "qrels", `${split}.tsv`));
  const queries: BeirQuery[] = [];
  for await (const q of readJsonl(join(dir, "queries.jsonl"))) {
    if (Object.hasOwn(qrels, q.id)) queries.push({ id: q.id, text: q.text });
  }
  const found = new Set(queries.map((q) => q.id));
  const missing = Object.keys(qrels).filter((id) => !found.has(id));
  if (missing.length > 0) {
    throw new Error(`${dir}: ${missing.length} quer${missing.length === 1 ? "y" : "ies"} of qrels/${split}.tsv ` +
      `not in queries.jsonl (${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""})`);
  }
  return { queries, qrels };
}

/**
 * BEIR's `query-id corpus-id score` lines (tab-separated, with a header line), or TREC's `qid iter docno rel`.
 * Grades are integers, as trec_eval reads them.
 */
export function parseQrels(text: string, name = "qrels"): Qrels {
  // Maps, so that ids such as "__proto__" stay data.
  const qrels = new Map<string, Map<string, number>>();
  text.split(/\r?\n/).forEach((line, i) => {
    const cols = line.trim().split(/\s+/);
    if (cols[0] === "") return;
    if (cols.length !== 3 && cols.length !== 4) throw new Error(`${name}:${i + 1}: expected 3 or 4 columns, got ${cols.length}`);
    const [qid, docid, grade] = cols.length === 3 ? cols : [cols[0], cols[2], cols[3]];
    if (!/^-?\d+$/.test(grade)) {
      if (i === 0) return;
      throw new Error(`${name}:${i + 1}: relevance "${grade}" is not an integer`);
    }
    const judged = qrels.get(qid) ?? qrels.set(qid, new Map()).get(qid)!;
    if (judged.has(docid)) throw new Error(`${name}:${i + 1}: document ${docid} judged twice for query ${qid}`);
    judged.set(docid, Number(grade));
  });
  return Object.fromEntries([...qrels].map(([qid, judged]) => [qid, Object.fromEntries(judged)]));
}

export interface RunOptions extends Omit<QueryOptions, "k"> {
  /** Documents kept per query. Default 100. */
  depth?: number;
  /** Queries embedded so far, of `total`. */
  onQuery?: (done: number, total: number) => void;
}

/**
 * Each query's top documents, scored by their best chunk (query reasoning on unless turned off). The queries are
 * reasoned about and embedded together, the SearchR3's batchSize (or `batchSize`) at a time.
 */
export async function runQueries(r3: SearchR3, index: SearchIndex, queries: readonly BeirQuery[], opts: RunOptions = {}): Promise<Run> {
  const { depth = 100, onQuery, reasoning = true, exact, hybrid = false, ...generate } = opts;
  const texts = queries.map((q) => q.text);
  const embedded = reasoning ? (await r3.generate(texts, { ...generate, onProgress: onQuery })).map((r) => r.text) : texts;
  const vectors = await r3.encode(embedded, { kind: "query", batchSize: generate.batchSize, onProgress: reasoning ? undefined : onQuery });
  const run = new Map<string, Record<string, number>>();
  for (const [i, q] of queries.entries()) {
    const hits = hybrid ? await index.hybridSearch(vectors[i], q.text, depth, { exact }) : await index.search(vectors[i], depth, { exact });
    run.set(q.id, Object.fromEntries(hits.map((h) => [h.id, h.score])));
  }
  return Object.fromEntries(run);
}
