// Building an index from a corpus, resumably: embed the documents the index does not hold with the same text,
// replace those whose text changed, remove those the corpus no longer has, and commit in batches.
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import {
  chunkText, describeSkipped, documentText, isFromCorpus, readCorpus, type Chunk, type CorpusOptions, type Document,
  type SkippedFile,
} from "./corpus.ts";
import { IndexLock } from "./lock.ts";
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

export interface IndexOptions extends Omit<CorpusOptions, "onSkip"> {
  /**
   * Chunks per commit: documents are committed whole, in batches of at least this many chunks, so that a run killed
   * outright (SIGKILL, a crash) loses at most that much work; `signal` loses none. Default 64.
   */
  batchChunks?: number;
  /** Chunks at which an ANN index is built. Default ANN_MIN_ROWS. */
  annMinRows?: number;
  /**
   * Remove the documents read from this corpus by earlier runs (a file under the folder, a line of the file) that it
   * no longer holds. Default: true for a folder, false for a file.
   */
  prune?: boolean;
  /** Stops the run at the next batch: every document embedded so far is committed, and the report says so. */
  signal?: AbortSignal;
  /** The index's lock, already taken by the caller (IndexLock.acquire); without it the run takes it itself. */
  lock?: IndexLock;
  onProgress?: (p: IndexProgress) => void;
  /** Told of what the run does beside embedding, such as taking over a lock left by a dead process. */
  onMessage?: (message: string) => void;
}

export interface IndexReport {
  /** Documents in the corpus. */
  documents: number;
  /** Documents embedded by this run, of which `replaced` had stored chunks from other text. */
  embedded: number;
  replaced: number;
  /** Documents already stored with the same text. */
  skipped: number;
  /** Documents removed because the corpus no longer has them (see IndexOptions.prune). */
  removed: number;
  /** Files of the folder that are not documents, and why. */
  skippedFiles: SkippedFile[];
  chunks: number;
  tokens: number;
  seconds: number;
  /** Chunks in the index after the run. */
  totalChunks: number;
  annIndex: boolean;
  /** Stopped by IndexOptions.signal: `embedded` documents were stored, the rest are left to the next run. */
  interrupted: boolean;
}

const hashText = (text: string) => createHash("sha256").update(text).digest("hex");

/** A document being embedded: its vectors arrive a batch at a time, possibly in several batches. */
interface Pending {
  doc: Document;
  hash: string;
  chunks: Chunk[];
  vectors: Float32Array[];
}

/**
 * Embeds the documents of `corpus` (see readCorpus) that the index does not hold with the same text, replacing the
 * chunks of those whose text changed, and removing (with `prune`) those no longer in the corpus. Chunks of
 * consecutive documents are embedded together, the SearchR3's batchSize of them in each forward pass.
 */
export async function indexCorpus(r3: SearchR3, index: SearchIndex, corpus: string, opts: IndexOptions = {}): Promise<IndexReport> {
  const lock = opts.lock ?? (index.uri.includes("://") ? undefined : await IndexLock.acquire(index.uri, opts.onMessage));
  try {
    return await run(r3, index, corpus, opts);
  } finally {
    if (!opts.lock) await lock?.release();
  }
}

async function run(r3: SearchR3, index: SearchIndex, corpus: string, opts: IndexOptions): Promise<IndexReport> {
  const { chunkTokens, chunkOverlap } = index.settings;
  const batchChunks = opts.batchChunks ?? 64;
  const prune = opts.prune ?? (await stat(corpus)).isDirectory();
  const reading = { include: opts.include, exclude: opts.exclude };
  const stored = await index.storedDocuments();

  // A first pass decides what to embed, so that progress and ETA count only that.
  const ids = new Set<string>();
  const todo = new Set<string>();
  const skippedFiles: SkippedFile[] = [];
  for await (const doc of readCorpus(corpus, { ...reading, onSkip: (s) => skippedFiles.push(s) })) {
    if (ids.has(doc.id)) throw new Error(`${doc.source}: document id ${JSON.stringify(doc.id)} appears twice in ${corpus}`);
    ids.add(doc.id);
    if (stored.get(doc.id)?.hash !== hashText(documentText(doc))) todo.add(doc.id);
  }
  if (ids.size === 0) {
    const skipped = describeSkipped(skippedFiles);
    throw new Error(`${corpus}: no documents to index${skipped ? ` (${skipped})` : ""}`);
  }
  const gone = prune ? [...stored].filter(([id, s]) => !ids.has(id) && isFromCorpus(corpus, s.source)).map(([id]) => id) : [];
  await index.write([], gone);

  const start = performance.now();
  const report: IndexReport = {
    documents: ids.size, embedded: 0, replaced: 0, skipped: ids.size - todo.size, removed: gone.length, skippedFiles,
    chunks: 0, tokens: 0, seconds: 0, totalChunks: 0, annIndex: false, interrupted: false,
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
  const complete = ({ doc, hash, chunks, vectors }: Pending) => {
    chunks.forEach((c, i) => rows.push({
      doc_id: doc.id, chunk: c.index, offset: c.offset, tokens: c.tokens, text: c.text, title: doc.title ?? null,
      source: doc.source, doc_hash: hash, vector: vectors[i],
    }));
    if (stored.has(doc.id)) {
      replacing.push(doc.id);
      report.replaced++;
    }
    report.embedded++;
    report.chunks += chunks.length;
    report.tokens += chunks.reduce((sum, c) => sum + c.tokens, 0);
  };

  const pending: Pending[] = [];
  let waiting = 0;
  /** Embeds batches of the pending chunks while a whole batch waits (or, with `all`, while any does). */
  const embed = async (all: boolean) => {
    while (!opts.signal?.aborted && (waiting >= r3.batchSize || (all && waiting > 0))) {
      const batch: { p: Pending; chunk: Chunk }[] = [];
      for (const p of pending) {
        for (let i = p.vectors.length; i < p.chunks.length && batch.length < r3.batchSize; i++) batch.push({ p, chunk: p.chunks[i] });
      }
      const vectors = await r3.encode(batch.map((b) => b.chunk.text), { kind: "document" });
      batch.forEach((b, i) => b.p.vectors.push(vectors[i]));
      waiting -= batch.length;
      while (pending.length > 0 && pending[0].vectors.length === pending[0].chunks.length) complete(pending.shift()!);
      if (rows.length >= batchChunks) await flush();
      progress();
    }
  };

  progress();
  for await (const doc of readCorpus(corpus, reading)) {
    if (opts.signal?.aborted) break;
    if (!todo.has(doc.id)) continue;
    // Hashed again: the file may have changed since the first pass.
    const text = documentText(doc);
    const chunks = chunkText(r3.engine.tokenizer, text, chunkTokens, chunkOverlap);
    pending.push({ doc, hash: hashText(text), chunks, vectors: [] });
    waiting += chunks.length;
    await embed(false);
  }
  await embed(true);
  // Interrupted, the documents still pending (some of their chunks embedded) are left to the next run.
  await flush();
  report.interrupted = opts.signal?.aborted ?? false;
  // Compaction and the indices wait for the run that finishes.
  report.annIndex = report.interrupted ? await index.hasAnnIndex() : await index.optimize(opts.annMinRows);
  report.totalChunks = await index.countChunks();
  report.seconds = (performance.now() - start) / 1000;
  return report;
}
