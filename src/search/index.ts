// A LanceDB store of Search-R3 chunk embeddings: building it from a corpus (resumably) and searching it.
//
// Layout: table `settings` holds one JSON row (model, config hash, prompts, chunking); table `chunks` one row per
// chunk. Each write is a LanceDB commit holding whole documents, so a killed run leaves every document either
// complete or absent, and the next run embeds only the documents whose text hash is not stored.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import * as lancedb from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Int32, Schema, Utf8 } from "apache-arrow";
import { readJson, type ModelDir } from "../io/files.ts";
import { chunkText, documentText, readCorpus } from "./corpus.ts";
import { compareIds } from "./metrics.ts";
import type { Reasoning, ReasoningOptions, SearchR3, SearchR3Options } from "./searchr3.ts";

/** What the embeddings in an index depend on; an index refuses writes and queries that would mix other ones. */
export interface IndexSettings {
  /** The model folder's name. */
  model: string;
  /** SHA-256 of config.json's content, keys sorted, so that formatting does not count. */
  configHash: string;
  dimensions: number;
  maxLength: number;
  chunkTokens: number;
  chunkOverlap: number;
  embedToken: string;
  documentSystem: string;
  querySystem: string;
  reasoningSystem: string;
  embedPrompt: string;
  embedSuffix: string;
}

export interface ModelIdentity {
  model: string;
  configHash: string;
}

export async function modelIdentity(dir: ModelDir): Promise<ModelIdentity> {
  const config = await readJson(dir, "config.json");
  const model = dir.name.split(/[\\/]/).filter(Boolean).at(-1) ?? dir.name;
  return { model, configHash: createHash("sha256").update(canonicalJson(config)).digest("hex") };
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export interface Chunking {
  chunkTokens: number;
  chunkOverlap: number;
}

/**
 * Chunks fill maxLength once the document prompt is around them, and overlap by an eighth, unless `given` says
 * otherwise. A chunk re-tokenized inside the prompt can still come out a token longer where it merges with the text
 * around it; SearchR3 then cuts that token, with a warning.
 */
export function resolveChunking(r3: SearchR3, given: Partial<Chunking> = {}): Chunking {
  const chunkTokens = given.chunkTokens ?? r3.maxLength - r3.prepare("", "document").ids.length;
  if (chunkTokens < 1) throw new Error(`maxLength ${r3.maxLength} leaves no room for text in the document prompt`);
  return { chunkTokens, chunkOverlap: given.chunkOverlap ?? Math.floor(chunkTokens / 8) };
}

export function indexSettings(r3: SearchR3, model: ModelIdentity, chunking: Chunking): IndexSettings {
  return {
    ...model,
    dimensions: r3.engine.model.config.hiddenSize,
    maxLength: r3.maxLength,
    ...chunking,
    embedToken: r3.embedToken,
    documentSystem: r3.documentSystem,
    querySystem: r3.querySystem,
    reasoningSystem: r3.reasoningSystem,
    embedPrompt: r3.embedPrompt,
    embedSuffix: r3.embedSuffix,
  };
}

/** The SearchR3 options that embed queries (and documents) the way the index's documents were embedded. */
export function searchR3Options(settings: IndexSettings): SearchR3Options {
  const { maxLength, embedToken, documentSystem, querySystem, reasoningSystem, embedPrompt, embedSuffix } = settings;
  return { maxLength, embedToken, documentSystem, querySystem, reasoningSystem, embedPrompt, embedSuffix };
}

/** "key: stored X, given Y" for each setting that differs. */
export function settingsDiff(stored: IndexSettings, given: Partial<IndexSettings>): string[] {
  return (Object.keys(stored) as (keyof IndexSettings)[])
    .filter((key) => key in given && given[key] !== stored[key])
    .map((key) => `${key}: index has ${JSON.stringify(stored[key])}, this run ${JSON.stringify(given[key])}`);
}

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
type ChunkRow = {
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

/** With reasoning, `onText` receives the reasoning as the model writes it. */
export interface QueryOptions extends ReasoningOptions, SearchOptions {
  /** Documents to return. Default 10. */
  k?: number;
  /** Let the model reason about the query before embedding it. Default true. */
  reasoning?: boolean;
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
  const { k = 10, reasoning = true, exact, ...generate } = opts;
  if (!reasoning) return { hits: await index.search(await r3.encodeQuery(query), k, { exact }) };
  const [thought] = await r3.generate([query], generate);
  const [vector] = await r3.encode([thought.text], { kind: "query" });
  return { hits: await index.search(vector, k, { exact }), reasoning: thought };
}

export interface IndexProgress {
  /** Documents embedded so far in this run, of `total` that needed it. */
  done: number;
  total: number;
  chunks: number;
  tokens: number;
  seconds: number;
}

export interface IndexOptions {
  /** Chunks per commit: at most this many (plus the rest of the last document) are lost to a kill. Default 64. */
  batchChunks?: number;
  /** Chunks at which an ANN index is built. Default ANN_MIN_ROWS. */
  annMinRows?: number;
  onProgress?: (p: IndexProgress) => void;
}

export interface IndexReport {
  /** Documents in the corpus. */
  documents: number;
  /** Documents embedded by this run, of which `replaced` had stored chunks from other text. */
  embedded: number;
  replaced: number;
  /** Documents already stored with the same text. */
  skipped: number;
  chunks: number;
  tokens: number;
  seconds: number;
  /** Chunks in the index after the run. */
  totalChunks: number;
  annIndex: boolean;
}

const hashText = (text: string) => createHash("sha256").update(text).digest("hex");

/**
 * Embeds the documents of `corpus` (see readCorpus) that the index does not hold with the same text, replacing the
 * chunks of those whose text changed. Documents no longer in the corpus stay in the index.
 */
export async function indexCorpus(r3: SearchR3, index: SearchIndex, corpus: string, opts: IndexOptions = {}): Promise<IndexReport> {
  const { chunkTokens, chunkOverlap } = index.settings;
  const batchChunks = opts.batchChunks ?? 64;
  const stored = await index.storedDocuments();

  // A first pass decides what to embed, so that progress and ETA count only that.
  const ids = new Set<string>();
  const todo = new Set<string>();
  for await (const doc of readCorpus(corpus)) {
    if (ids.has(doc.id)) throw new Error(`${doc.source}: document id ${JSON.stringify(doc.id)} appears twice in ${corpus}`);
    ids.add(doc.id);
    if (stored.get(doc.id) !== hashText(documentText(doc))) todo.add(doc.id);
  }

  const start = performance.now();
  const report: IndexReport = {
    documents: ids.size, embedded: 0, replaced: 0, skipped: ids.size - todo.size, chunks: 0, tokens: 0,
    seconds: 0, totalChunks: 0, annIndex: false,
  };
  const progress = () => opts.onProgress?.({
    done: report.embedded, total: todo.size, chunks: report.chunks, tokens: report.tokens, seconds: (performance.now() - start) / 1000,
  });
  let rows: ChunkRow[] = [];
  let replacing: string[] = [];
  const flush = async () => {
    await index.write(rows, replacing);
    rows = [];
    replacing = [];
  };
  progress();
  for await (const doc of readCorpus(corpus)) {
    if (!todo.has(doc.id)) continue;
    // Hashed again: the file may have changed since the first pass.
    const text = documentText(doc);
    const docHash = hashText(text);
    const chunks = chunkText(r3.engine.tokenizer, text, chunkTokens, chunkOverlap);
    const vectors = await r3.encode(chunks.map((c) => c.text), { kind: "document" });
    chunks.forEach((c, i) => rows.push({
      doc_id: doc.id, chunk: c.index, offset: c.offset, tokens: c.tokens, text: c.text, title: doc.title ?? null,
      source: doc.source, doc_hash: docHash, vector: vectors[i],
    }));
    if (stored.has(doc.id)) {
      replacing.push(doc.id);
      report.replaced++;
    }
    report.embedded++;
    report.chunks += chunks.length;
    report.tokens += chunks.reduce((sum, c) => sum + c.tokens, 0);
    if (rows.length >= batchChunks) await flush();
    progress();
  }
  await flush();
  report.annIndex = await index.optimize(opts.annMinRows);
  report.totalChunks = await index.countChunks();
  report.seconds = (performance.now() - start) / 1000;
  return report;
}
