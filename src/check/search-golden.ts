// The Search-R3 golden embeddings (search-golden.json, from HF transformers in float64 on the BF16 weights) as a
// quantized model sees them: each query's and document's embedding's cosine to the golden one, and whether every
// query still ranks the golden documents in the golden order.
import { readJson, type ModelDir } from "../io/files.ts";
import type { SearchR3 } from "../search/searchr3.ts";
import { cosineMatrix, cosineSimilarity } from "../search/similarity.ts";

export interface SearchAgreement {
  /** Cosine of each query's and document's embedding to the golden one. */
  queries: number[];
  documents: number[];
  minCosine: number;
  /** Per query: the documents by golden cosine (best first), and by ours. */
  rankings: { golden: number[]; got: number[] }[];
  /** Every query ranks the documents as the golden does. */
  rankingKept: boolean;
}

const ranking = (row: number[]) => row.map((_, j) => j).sort((a, b) => row[b] - row[a] || a - b);

export async function runSearchGoldenCheck(r3: SearchR3, dir: ModelDir): Promise<SearchAgreement> {
  const golden = await readJson(dir, "search-golden.json");
  const q = await r3.encode(golden.queries.map((e: any) => e.input), { kind: "query" });
  const d = await r3.encode(golden.documents.map((e: any) => e.input));
  const queries = golden.queries.map((e: any, i: number) => cosineSimilarity(q[i], e.hidden_normalized));
  const documents = golden.documents.map((e: any, i: number) => cosineSimilarity(d[i], e.hidden_normalized));
  const ours = cosineMatrix(q, d);
  const rankings = (golden.cosine as number[][]).map((row, i) => ({ golden: ranking(row), got: ranking(ours[i]) }));
  return {
    queries, documents, minCosine: Math.min(...queries, ...documents), rankings,
    rankingKept: rankings.every((r) => r.golden.every((j, k) => r.got[k] === j)),
  };
}
