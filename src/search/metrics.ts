// Retrieval metrics with trec_eval's definitions (usnistgov/trec_eval 9.x: m_ndcg_cut.c, m_recall.c,
// m_recip_rank.c, form_res_rels.c), which pytrec_eval and BEIR use too:
// - Ranking: score descending, ties broken by document id descending in byte (strcmp) order.
// - Relevant: a grade >= 1 (trec_eval's default relevance level). Grades are the integers of the qrels; a
//   negative grade counts as unjudged.
// - nDCG@k: gain = the grade itself (not 2^grade - 1), discount log2(rank + 1) with ranks from 1, ideal DCG from
//   all positively judged documents of the query, retrieved or not; 0 when the query has none.
// - Recall@k: relevant documents in the top k over all relevant documents of the query; 0 when it has none.
// - MRR@k: 1 / rank of the first relevant document in the top k, else 0 (trec_eval's recip_rank with -M k).
// - Averages are over the queries that are in the qrels and have at least one retrieved document (trec_eval
//   without -c): a query with no relevant documents counts, with 0 for every measure; one with no results does
//   not.

/** Relevance judgments: query id -> document id -> grade. */
export type Qrels = Record<string, Record<string, number>>;
/** Retrieval scores: query id -> document id -> score, higher first. */
export type Run = Record<string, Record<string, number>>;

export interface Cutoffs {
  ndcg: number;
  recall: number;
  mrr: number;
}

export const BEIR_CUTOFFS: Cutoffs = { ndcg: 10, recall: 100, mrr: 10 };

export interface Evaluation {
  /** Means over the evaluated queries, keyed "ndcg@10", "recall@100", "mrr@10" (with the cutoffs given). */
  metrics: Record<string, number>;
  /** The same measures per evaluated query, in qrels order. */
  perQuery: Record<string, Record<string, number>>;
}

/** Code-point (= UTF-8 byte, = strcmp) order; plain `<` compares UTF-16 code units, which differs on surrogates. */
export function compareIds(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const sx = x >= 0xd800 && x < 0xe000;
    const sy = y >= 0xd800 && y < 0xe000;
    // A surrogate starts a code point above U+FFFF, so it sorts after any other code unit.
    return sx === sy ? x - y : sx ? 1 : -1;
  }
  return a.length - b.length;
}

/** Document ids in trec_eval's order: by score descending, then by id descending. */
export function rankDocuments(scores: Record<string, number>): string[] {
  return Object.keys(scores).sort((a, b) => scores[b] - scores[a] || compareIds(b, a));
}

/** The grade of a document; undefined when it is not judged (own properties only, so "constructor" is an id). */
function gradeOf(judged: Record<string, number>, id: string): number | undefined {
  return Object.hasOwn(judged, id) ? judged[id] : undefined;
}

export function ndcgAt(ranking: readonly string[], judged: Record<string, number>, k: number): number {
  let dcg = 0;
  ranking.slice(0, k).forEach((id, i) => {
    const gain = gradeOf(judged, id) ?? 0;
    if (gain > 0) dcg += gain / Math.log2(i + 2);
  });
  const ideal = Object.values(judged).filter((g) => g > 0).sort((a, b) => b - a).slice(0, k);
  const idcg = ideal.reduce((sum, gain, i) => sum + gain / Math.log2(i + 2), 0);
  return idcg > 0 ? dcg / idcg : 0;
}

export function recallAt(ranking: readonly string[], judged: Record<string, number>, k: number): number {
  const relevant = Object.values(judged).filter(isRelevant).length;
  if (relevant === 0) return 0;
  return ranking.slice(0, k).filter((id) => isRelevant(gradeOf(judged, id))).length / relevant;
}

export function mrrAt(ranking: readonly string[], judged: Record<string, number>, k: number): number {
  const i = ranking.slice(0, k).findIndex((id) => isRelevant(gradeOf(judged, id)));
  return i < 0 ? 0 : 1 / (i + 1);
}

function isRelevant(grade: number | undefined): boolean {
  return grade !== undefined && grade >= 1;
}

export function evaluateRun(qrels: Qrels, run: Run, cutoffs: Cutoffs = BEIR_CUTOFFS): Evaluation {
  const names = { ndcg: `ndcg@${cutoffs.ndcg}`, recall: `recall@${cutoffs.recall}`, mrr: `mrr@${cutoffs.mrr}` };
  // A Map, so that a query id such as "__proto__" stays data.
  const perQuery = new Map<string, Record<string, number>>();
  const sums = { [names.ndcg]: 0, [names.recall]: 0, [names.mrr]: 0 };
  for (const [qid, judged] of Object.entries(qrels)) {
    const scores = Object.hasOwn(run, qid) ? run[qid] : undefined;
    if (!scores || Object.keys(scores).length === 0) continue;
    const ranking = rankDocuments(scores);
    const row = {
      [names.ndcg]: ndcgAt(ranking, judged, cutoffs.ndcg),
      [names.recall]: recallAt(ranking, judged, cutoffs.recall),
      [names.mrr]: mrrAt(ranking, judged, cutoffs.mrr),
    };
    perQuery.set(qid, row);
    for (const key of Object.keys(sums)) sums[key] += row[key];
  }
  const n = perQuery.size;
  const metrics = Object.fromEntries(Object.entries(sums).map(([key, sum]) => [key, n > 0 ? sum / n : 0]));
  return { metrics, perQuery: Object.fromEntries(perQuery) };
}
