// A LanceDB store of Search-R3 chunk embeddings, and the nearest-neighbour search over it.
//
// Layout: table `settings` holds one JSON row (the model's identity, prompts, chunking); table `chunks` one row per
// chunk, with a full-text (BM25) index of the chunk texts beside the vectors. Each write is a LanceDB commit holding
// whole documents, so a killed run leaves every document either complete or absent, and the next run embeds only
// the documents whose text hash is not stored.
import { existsSync } from "node:fs";
import * as lancedb from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Int32, Schema, Utf8 } from "apache-arrow";
import { reciprocalRankFusion, RRF_K } from "./fusion.ts";
import { compareIds } from "./metrics.ts";
import { identityDiff, type ModelIdentity } from "./model-identity.ts";
import { settingsDiff, type IndexSettings } from "./settings.ts";

/** One search result: a document, scored by its best chunk. */
export interface Hit {
  id: string;
  /**
   * Cosine similarity of the query and the best chunk; for a full-text search the best chunk's BM25 score; for a
   * hybrid search the reciprocal-rank fusion of the two rankings (see `ranks`).
   */
  score: number;
  chunk: number;
  /** Offset of the chunk in the document's text (title line included), in UTF-16 code units. */
  offset: number;
  text: string;
  title?: string;
  source: string;
  /** In a hybrid search: the document's place (from 1) in the vector and the full-text rankings, where it has one. */
  ranks?: { vector?: number; text?: number };
}

export interface SearchOptions {
  /** Scan every chunk even where an ANN index exists. */
  exact?: boolean;
}

/** The documents of each ranking that a hybrid search fuses: deep enough that the fused top k rarely changes. */
export const HYBRID_DEPTH = 100;

/**
 * Chunks at which indexing builds an ANN index; below it every query is an exact scan. At 1536 dimensions an exact
 * scan costs 12-15 us a chunk on 2 busy cores (250-300 ms at 20k chunks), the tuned IVF-HNSW-SQ query 5 ms with the
 * same top 10, and building the index about a minute at 20k chunks, repaid within a few hundred queries; below that
 * the scan is cheap next to embedding the query. Measured by bench/ann-threshold.ts.
 */
export const ANN_MIN_ROWS = 20_000;

const annIndex = () => lancedb.Index.hnswSq({ distanceType: "cosine" });
// LanceDB's defaults (20 partitions probed, no refinement) lost 6-14% of the true top 10 in the benchmark; these
// found all of it, and the refinement re-scores the candidates with their full vectors, so scores are exact.
const annQuery = (query: lancedb.VectorQuery, limit: number) => query.nprobes(64).ef(Math.max(128, limit)).refineFactor(2);

const ftsIndex = () => lancedb.Index.fts();

const SETTINGS = "settings";
const CHUNKS = "chunks";
const COLUMNS = ["doc_id", "chunk", "offset", "text", "title", "source"];

// A type rather than an interface, so that it is assignable to LanceDB's Record<string, unknown> rows.
export type ChunkRow = {
  doc_id: string;
  chunk: number;
  offset: number;
  tokens: number;
  text: string;
  title: string | null;
  source: string;
  doc_hash: string;
  vector: Float32Array;
};

function chunkSchema(dimensions: number): Schema {
  return new Schema([
    new Field("doc_id", new Utf8(), false),
    new Field("chunk", new Int32(), false),
    new Field("offset", new Int32(), false),
    new Field("tokens", new Int32(), false),
    new Field("text", new Utf8(), false),
    new Field("title", new Utf8(), true),
    new Field("source", new Utf8(), false),
    new Field("doc_hash", new Utf8(), false),
    new Field("vector", new FixedSizeList(dimensions, new Field("item", new Float32(), true)), false),
  ]);
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;

export class SearchIndex {
  private constructor(
    readonly uri: string,
    readonly settings: IndexSettings,
    private readonly table: lancedb.Table,
  ) {}

  /** The settings stored at `uri`, or undefined where no index has been created there. */
  static async readSettings(uri: string): Promise<IndexSettings | undefined> {
    // Connecting to a local path creates the folder, which a mistyped path should not leave behind.
    if (!uri.includes("://") && !existsSync(uri)) return undefined;
    const db = await lancedb.connect(uri);
    if (!(await db.tableNames()).includes(SETTINGS)) return undefined;
    const [row] = await (await db.openTable(SETTINGS)).query().toArray();
    const settings = row && JSON.parse(row.json);
    if (typeof settings?.model === "string") {
      throw new Error(`${uri} was made by an earlier r3gpu, which recorded the model by its folder name only; ` +
        "its documents cannot be checked against a model, so index them again into a new --db");
    }
    return settings;
  }

  /**
   * Opens the index at `uri` (a folder, or an object-store URI LanceDB knows). With `create`, makes one with those
   * settings where there is none, and refuses one whose settings differ; without it, refuses a missing index.
   */
  static async open(uri: string, opts: { create?: IndexSettings } = {}): Promise<SearchIndex> {
    const db = await lancedb.connect(uri);
    let settings = await SearchIndex.readSettings(uri);
    if (!settings) {
      if (!opts.create) throw new Error(`${uri}: no index here (build one with \`r3gpu index\`)`);
      settings = opts.create;
      // Written before any chunk, so that no chunk is ever stored without the settings it was embedded with.
      await db.createTable(SETTINGS, [{ json: JSON.stringify(settings) }], { mode: "create", existOk: true });
    } else if (opts.create) {
      const model = identityDiff(settings.model, opts.create.model);
      if (model.length > 0) throw anotherModel(uri, model);
      const diff = settingsDiff(settings, opts.create);
      if (diff.length > 0) {
        throw new Error(`${uri} holds embeddings made with other settings, which must not be mixed ` +
          `(${diff.join("; ")}); index into another --db, or use the same model and options`);
      }
    }
    const table = await db.createEmptyTable(CHUNKS, chunkSchema(settings.dimensions), { mode: "create", existOk: true });
    return new SearchIndex(uri, settings, table);
  }

  /** Refuses a model other than the one whose embeddings the index holds. */
  checkModel(model: ModelIdentity): void {
    const diff = identityDiff(this.settings.model, model);
    if (diff.length > 0) throw anotherModel(this.uri, diff);
  }

  countChunks(): Promise<number> {
    return this.table.countRows();
  }

  /** Every stored document has a chunk 0, committed with the rest of its chunks. */
  countDocuments(): Promise<number> {
    return this.table.countRows("chunk = 0");
  }

  /** Document id -> the hash of the text its stored chunks were made from, and where that text was read. */
  async storedDocuments(): Promise<Map<string, { hash: string; source: string }>> {
    const rows = await this.table.query().where("chunk = 0").select(["doc_id", "doc_hash", "source"]).toArray();
    return new Map(rows.map((r) => [r.doc_id as string, { hash: r.doc_hash as string, source: r.source as string }]));
  }

  /**
   * Replaces the chunks of the documents in `rows`: their old chunks go in one commit, the new ones in the next. A
   * kill between the two leaves those documents absent, to be embedded again by the next run.
   */
  async write(rows: ChunkRow[], replacing: readonly string[]): Promise<void> {
    if (replacing.length > 0) await this.table.delete(`doc_id IN (${replacing.map(sqlString).join(", ")})`);
    if (rows.length > 0) await this.table.add(rows);
  }

  /**
   * Compacts the many small commits of an indexing run and brings the indices up to date: the full-text index,
   * made where there is none yet (an index from before hybrid search), and the ANN index, built once the index
   * reaches `annMinRows` chunks. Returns whether an ANN index exists.
   */
  async optimize(annMinRows = ANN_MIN_ROWS): Promise<boolean> {
    await this.table.optimize();
    if (!(await this.hasFullTextIndex())) await this.table.createIndex("text", { config: ftsIndex() });
    if (await this.hasAnnIndex()) return true;
    if ((await this.countChunks()) < annMinRows) return false;
    await this.table.createIndex("vector", { config: annIndex() });
    return true;
  }

  async hasAnnIndex(): Promise<boolean> {
    return (await this.table.listIndices()).some((index) => index.columns.includes("vector"));
  }

  async hasFullTextIndex(): Promise<boolean> {
    return (await this.table.listIndices()).some((index) => index.indexType === "FTS" && index.columns.includes("text"));
  }

  /** Refuses full-text (and hybrid) search where the index has no full-text index yet. */
  async checkFullTextIndex(): Promise<void> {
    if (!(await this.hasFullTextIndex())) {
      throw new Error(`${this.uri} has no full-text index (an index from before hybrid search, or one never finished); ` +
        "run `r3gpu index` on it again to build one");
    }
  }

  /**
   * The k documents whose best chunk is most similar to `vector`, best first; ties in score go to the larger id, as
   * trec_eval ranks them.
   */
  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<Hit[]> {
    if (vector.length !== this.settings.dimensions) {
      throw new Error(`query vector has ${vector.length} dimensions, the index ${this.settings.dimensions}`);
    }
    return this.bestChunks(k, async (limit) => {
      const query = this.table.vectorSearch(vector).distanceType("cosine").select([...COLUMNS, "_distance"]).limit(limit);
      // Without an ANN index the tuning is ignored and LanceDB scans every chunk.
      const rows = await (opts.exact ? query.bypassVectorIndex() : annQuery(query, limit)).toArray();
      return rows.map((row) => ({ row, score: 1 - row._distance }));
    });
  }

  /**
   * The k documents whose best chunk scores highest for `text` by BM25 (LanceDB's full-text index: words lowercased
   * and stemmed, English stop words left out), best first; only documents with a matching word.
   */
  async fullTextSearch(text: string, k: number): Promise<Hit[]> {
    await this.checkFullTextIndex();
    return this.bestChunks(k, async (limit) => {
      const rows = await this.table.query().fullTextSearch(text, { columns: "text" }).select([...COLUMNS, "_score"]).limit(limit).toArray();
      return rows.map((row) => ({ row, score: row._score as number }));
    });
  }

  /**
   * The vector ranking and the full-text ranking of the documents, HYBRID_DEPTH deep (or k), fused by reciprocal
   * rank (see fusion.ts); each hit shows its best chunk by vector, or by text where only the text ranking has it.
   */
  async hybridSearch(vector: Float32Array, text: string, k: number, opts: SearchOptions = {}): Promise<Hit[]> {
    const depth = Math.max(k, HYBRID_DEPTH);
    const [byVector, byText] = [await this.search(vector, depth, opts), await this.fullTextSearch(text, depth)];
    const chunks = new Map([...byText, ...byVector].map((h) => [h.id, h]));
    const rank = (hits: Hit[]) => new Map(hits.map((h, i) => [h.id, i + 1]));
    const [vectorRanks, textRanks] = [rank(byVector), rank(byText)];
    return reciprocalRankFusion([byVector.map((h) => h.id), byText.map((h) => h.id)], RRF_K).slice(0, k).map(({ id, score }) => ({
      ...chunks.get(id)!, score, ranks: { vector: vectorRanks.get(id), text: textRanks.get(id) },
    }));
  }

  /**
   * The k best documents, each by its best chunk, from `rows(limit)`: the `limit` best chunks. Documents with several
   * chunks among the best take several rows, so more are fetched until k documents show or none are left.
   */
  private async bestChunks(k: number, rows: (limit: number) => Promise<{ row: Record<string, any>; score: number }[]>): Promise<Hit[]> {
    const total = await this.countChunks();
    for (let limit = Math.min(total, 4 * k); ; limit = Math.min(total, 4 * limit)) {
      const found = await rows(Math.max(1, limit));
      const best = new Map<string, Hit>();
      for (const { row, score } of found) {
        const hit: Hit = {
          id: row.doc_id, score, chunk: row.chunk, offset: row.offset, text: row.text, title: row.title ?? undefined, source: row.source,
        };
        const seen = best.get(hit.id);
        if (!seen || hit.score > seen.score) best.set(hit.id, hit);
      }
      // Fewer rows than asked for: a full-text search has found every chunk with a matching word.
      if (best.size >= k || limit >= total || found.length < limit) {
        return [...best.values()].sort((a, b) => b.score - a.score || compareIds(b.id, a.id)).slice(0, k);
      }
    }
  }
}

function anotherModel(uri: string, reasons: string[]): Error {
  return new Error(`${uri} holds the embeddings of another model, which must not be mixed with this one's ` +
    `(${reasons.join("; ")}); use the model the index was built with, or another --db`);
}
