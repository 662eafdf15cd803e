// A LanceDB store of Search-R3 chunk embeddings, and the nearest-neighbour search over it.
//
// Layout: table `settings` holds one JSON row (model, config hash, prompts, chunking); table `chunks` one row per
// chunk. Each write is a LanceDB commit holding whole documents, so a killed run leaves every document either
// complete or absent, and the next run embeds only the documents whose text hash is not stored.
import { existsSync } from "node:fs";
import * as lancedb from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Int32, Schema, Utf8 } from "apache-arrow";
import { compareIds } from "./metrics.ts";
import { settingsDiff, type IndexSettings, type ModelIdentity } from "./settings.ts";

/** One search result: a document, scored by its best chunk. */
export interface Hit {
  id: string;
  /** Cosine similarity of the query and the best chunk. */
  score: number;
  chunk: number;
  /** Offset of the chunk in the document's text (title line included), in UTF-16 code units. */
  offset: number;
  text: string;
  title?: string;
  source: string;
}

export interface SearchOptions {
  /** Scan every chunk even where an ANN index exists. */
  exact?: boolean;
}

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
    return row && JSON.parse(row.json);
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
    const diff = settingsDiff(this.settings, model);
    if (diff.length > 0) throw new Error(`${this.uri} was built with another model (${diff.join("; ")})`);
  }

  countChunks(): Promise<number> {
    return this.table.countRows();
  }

  /** Document id -> hash of the text its stored chunks were made from. */
  async storedDocuments(): Promise<Map<string, string>> {
    // Every stored document has a chunk 0, committed with the rest of its chunks.
    const rows = await this.table.query().where("chunk = 0").select(["doc_id", "doc_hash"]).toArray();
    return new Map(rows.map((r) => [r.doc_id as string, r.doc_hash as string]));
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
   * Compacts the many small commits of an indexing run, brings an existing ANN index up to date, and builds one once
   * the index reaches `annMinRows` chunks. Returns whether an ANN index exists.
   */
  async optimize(annMinRows = ANN_MIN_ROWS): Promise<boolean> {
    await this.table.optimize();
    if (await this.hasAnnIndex()) return true;
    if ((await this.countChunks()) < annMinRows) return false;
    await this.table.createIndex("vector", { config: annIndex() });
    return true;
  }

  async hasAnnIndex(): Promise<boolean> {
    return (await this.table.listIndices()).some((index) => index.columns.includes("vector"));
  }

  /**
   * The k documents whose best chunk is most similar to `vector`, best first; ties in score go to the larger id, as
   * trec_eval ranks them.
   */
  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<Hit[]> {
    if (vector.length !== this.settings.dimensions) {
      throw new Error(`query vector has ${vector.length} dimensions, the index ${this.settings.dimensions}`);
    }
    const total = await this.countChunks();
    // Documents with several chunks among the nearest take several rows, so fetch more rows until k documents show.
    for (let limit = Math.min(total, 4 * k); ; limit = Math.min(total, 4 * limit)) {
      const query = this.table.vectorSearch(vector).distanceType("cosine").select([...COLUMNS, "_distance"]).limit(Math.max(1, limit));
      // Without an ANN index the tuning is ignored and LanceDB scans every chunk.
      const rows = await (opts.exact ? query.bypassVectorIndex() : annQuery(query, limit)).toArray();
      const best = new Map<string, Hit>();
      for (const row of rows) {
        const hit: Hit = {
          id: row.doc_id, score: 1 - row._distance, chunk: row.chunk, offset: row.offset,
          text: row.text, title: row.title ?? undefined, source: row.source,
        };
        const seen = best.get(hit.id);
        if (!seen || hit.score > seen.score) best.set(hit.id, hit);
      }
      if (best.size >= k || limit >= total) {
        return [...best.values()].sort((a, b) => b.score - a.score || compareIds(b.id, a.id)).slice(0, k);
      }
    }
  }
}
