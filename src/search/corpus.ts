// Documents to index, from a folder of .txt/.md files, a JSONL file or a BEIR corpus, and their token chunks.
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { extname, join, relative, sep } from "node:path";
import { createInterface } from "node:readline";
import type { TextTokenizer } from "../text/tokenizer.ts";

export interface Document {
  id: string;
  title?: string;
  text: string;
  /** Where it was read from: the file, or the JSONL file and line. */
  source: string;
}

/**
 * The documents under `path`, in a stable order:
 * - a folder with a `corpus.jsonl` is a BEIR dataset, read from that file;
 * - any other folder: its `.txt` and `.md` files, at any depth, each a document whose id is its path relative to the
 *   folder (with `/` separators);
 * - a file: JSON lines of `{"id" (or BEIR's "_id"), "text", "title"?}`.
 */
export async function* readCorpus(path: string): AsyncGenerator<Document> {
  if (!(await stat(path)).isDirectory()) return yield* readJsonl(path);
  const beir = join(path, "corpus.jsonl");
  if (await isFile(beir)) return yield* readJsonl(beir);
  for (const file of await textFiles(path)) {
    const id = relative(path, file).split(sep).join("/");
    yield { id, text: await readFile(file, "utf8"), source: file };
  }
}

export async function* readJsonl(path: string): AsyncGenerator<Document> {
  let line = 0;
  for await (const raw of createInterface({ input: createReadStream(path, "utf8"), crlfDelay: Infinity })) {
    line++;
    if (raw.trim() === "") continue;
    const where = `${path}:${line}`;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line === 1 ? raw.replace(/^\uFEFF/, "") : raw);
    } catch (e) {
      throw new Error(`${where}: invalid JSON (${(e as Error).message})`);
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new Error(`${where}: not a JSON object`);
    const id = doc.id ?? doc._id;
    if (typeof id !== "string" && typeof id !== "number") throw new Error(`${where}: no "id" (or "_id") string`);
    if (typeof doc.text !== "string") throw new Error(`${where}: no "text" string`);
    if (doc.title !== undefined && doc.title !== null && typeof doc.title !== "string") throw new Error(`${where}: "title" is not a string`);
    yield { id: String(id), title: (doc.title as string | null) || undefined, text: doc.text, source: where };
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function textFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (folder: string) => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && [".txt", ".md"].includes(extname(entry.name).toLowerCase())) out.push(path);
    }
  };
  await walk(dir);
  // Code-unit order rather than locale order, so that the order does not depend on the machine.
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The text that is chunked and embedded: the title, when there is one, on a line before the body. */
export function documentText(doc: Document): string {
  const text = doc.title ? `${doc.title}\n${doc.text}` : doc.text;
  // The tokenizer NFC-normalizes; chunking the normalized text keeps chunk texts and offsets exact slices of it.
  return text.normalize("NFC");
}

export interface Chunk {
  /** Position of the chunk in its document, from 0. */
  index: number;
  text: string;
  /** Offset of the chunk in the document's text, in UTF-16 code units. */
  offset: number;
  /** Tokens of `text` on its own. */
  tokens: number;
}

/**
 * Splits a text into pieces of at most `maxTokens` tokens, each starting `overlap` tokens (or a little more) before
 * the previous one ends. Cuts fall between tokens, moved to the nearest one that does not split a character, so every
 * chunk is an exact slice of `text` (which must be NFC, as documentText returns). A chunk is re-tokenized on
 * its own when embedded, which can merge tokens differently at its edges; a chunk that comes out longer is shortened.
 */
export function chunkText(tokenizer: TextTokenizer, text: string, maxTokens: number, overlap: number): Chunk[] {
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`chunk tokens must be a positive integer, got ${maxTokens}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= maxTokens) {
    throw new Error(`chunk overlap must be an integer from 0 to chunk tokens - 1 (${maxTokens - 1}), got ${overlap}`);
  }
  const ids = tokenizer.encode(text);
  if (ids.length <= maxTokens) return [{ index: 0, text, offset: 0, tokens: ids.length }];

  const n = ids.length;
  // A cut before token i splits a character when the bytes on either side decode differently apart than together
  // (a character has at most 4 bytes, so 4 tokens either side hold it).
  const clean = (i: number) => {
    if (i <= 0 || i >= n) return true;
    const a = Math.max(0, i - 4);
    const b = Math.min(n, i + 4);
    return tokenizer.decode(ids.slice(a, i)) + tokenizer.decode(ids.slice(i, b)) === tokenizer.decode(ids.slice(a, b));
  };
  // The clean cut in (lo, hi] nearest to i, preferring i or below; i itself where none is (a budget under 4 tokens).
  const cutNear = (i: number, lo: number, hi: number) => {
    for (let j = i; j > lo; j--) if (clean(j)) return j;
    for (let j = i + 1; j <= hi; j++) if (clean(j)) return j;
    return i;
  };

  const chunks: Chunk[] = [];
  let start = 0;
  let offset = 0;
  for (;;) {
    let end = n - start <= maxTokens ? n : cutNear(start + maxTokens, start, start + maxTokens);
    let piece = tokenizer.decode(ids.slice(start, end));
    let tokens = tokenizer.encode(piece).length;
    while (tokens > maxTokens && end - start > 1) {
      end = cutNear(Math.max(start + 1, end - (tokens - maxTokens)), start, end - 1);
      piece = tokenizer.decode(ids.slice(start, end));
      tokens = tokenizer.encode(piece).length;
    }
    chunks.push({ index: chunks.length, text: piece, offset, tokens });
    if (end >= n) return chunks;
    const next = cutNear(Math.max(start + 1, end - overlap), start, end);
    offset += tokenizer.decode(ids.slice(start, next)).length;
    start = next;
  }
}
