// Building an index from a corpus, resumably: embed the documents the index does not hold with the same text,
// replace those whose text changed, and commit in batches.
import { createHash } from "node:crypto";
import { chunkText, documentText, readCorpus } from "./corpus.ts";
import type { SearchR3 } from "./searchr3.ts";
import type { ChunkRow, SearchIndex } from "./store.ts";


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
