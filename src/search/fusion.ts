// Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): several rankings of the same documents made
// into one without comparing their scores, which live on different scales (cosine similarity, BM25).
import { compareIds } from "./metrics.ts";

/** The constant of the paper, which damps the weight of the very first ranks; LanceDB's RRFReranker uses it too. */
export const RRF_K = 60;

/**
 * Each document scored by the sum over the rankings that hold it of 1 / (k + rank), its rank counted from 1; best
 * first, ties going to the larger id (as trec_eval breaks them).
 */
export function reciprocalRankFusion(rankings: readonly (readonly string[])[], k = RRF_K): { id: string; score: number }[] {
  if (!(k >= 0)) throw new Error(`reciprocal rank fusion: k must be a number >= 0, got ${k}`);
  const scores = new Map<string, number>();
  for (const ranking of rankings) {
    const seen = new Set<string>();
    ranking.forEach((id, i) => {
      if (seen.has(id)) throw new Error(`reciprocal rank fusion: document ${JSON.stringify(id)} is ranked twice in one ranking`);
      seen.add(id);
      scores.set(id, (scores.get(id) ?? 0) + 1 / (k + i + 1));
    });
  }
  return [...scores].map(([id, score]) => ({ id, score })).sort((a, b) => b.score - a.score || compareIds(b.id, a.id));
}
