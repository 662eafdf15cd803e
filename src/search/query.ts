// A query against an index: embedded after the model reasons about it (or directly), then searched, by its vector
// alone or (hybrid) fused with a full-text search of its words.
import type { Reasoning, ReasoningOptions, SearchR3 } from "./searchr3.ts";
import type { Hit, SearchIndex, SearchOptions } from "./store.ts";

/** With reasoning, `onText` receives the reasoning as the model writes it. */
export interface QueryOptions extends ReasoningOptions, SearchOptions {
  /** Documents to return. Default 10. */
  k?: number;
  /** Let the model reason about the query before embedding it. Default true. */
  reasoning?: boolean;
  /**
   * Fuse the vector ranking with a BM25 ranking of the query's words (as the user wrote them, not the reasoning)
   * by reciprocal rank (SearchIndex.hybridSearch). Default false.
   */
  hybrid?: boolean;
}

export interface QueryResult {
  hits: Hit[];
  reasoning?: Reasoning;
}

/**
 * Embeds `query` (after the model's reasoning, unless turned off) and finds its nearest documents. `r3` must embed as
 * the index's documents were: built with searchR3Options(index.settings) on the same model (see checkModel).
 */
export async function searchQuery(r3: SearchR3, index: SearchIndex, query: string, opts: QueryOptions = {}): Promise<QueryResult> {
  const { k = 10, reasoning = true, exact, hybrid = false, ...generate } = opts;
  const find = (vector: Float32Array) => (hybrid ? index.hybridSearch(vector, query, k, { exact }) : index.search(vector, k, { exact }));
  if (!reasoning) return { hits: await find(await r3.encodeQuery(query)) };
  const [thought] = await r3.generate([query], generate);
  const [vector] = await r3.encode([thought.text], { kind: "query" });
  return { hits: await find(vector), reasoning: thought };
}
