// Documents to index, from a folder of text files, a JSONL file, one text file or a BEIR corpus, and their token
// chunks.
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, extname, join, relative, resolve, sep } from "node:path";
import { createInterface } from "node:readline";
import picomatch from "picomatch";
import type { TextTokenizer } from "../text/tokenizer.ts";

export interface Document {
  id: string;
  title?: string;
  text: string;
  /** Where it was read from: the file (an absolute path), or the JSONL file and line (`/path/docs.jsonl:12`). */
  source: string;
}

/** The files of a folder that are documents, unless CorpusOptions.include says otherwise. */
export const DEFAULT_INCLUDE = ["**/*.txt", "**/*.md"];

export interface CorpusOptions {
  /**
   * Globs of the files of a folder that are documents, matched against their paths relative to the folder (with
   * `/`), ignoring case, by picomatch's rules (`*` does not match `/`, `**` any depth; names starting with a dot
   * match only a pattern that names the dot). Default DEFAULT_INCLUDE. A single file given as the corpus is one
   * document when these match its name.
   */
  include?: readonly string[];
  /** Globs of files of a folder to leave out although `include` matches them. */
  exclude?: readonly string[];
  /** Told of each file of a folder that is not read as a document, and why. */
  onSkip?: (skipped: SkippedFile) => void;
}

export type SkipReason = "not included" | "excluded" | "not a regular file" | "empty" | "not UTF-8 text";

export interface SkippedFile {
  path: string;
  reason: SkipReason;
}

/**
 * The documents under `path`, in a stable order:
 * - a folder with a `corpus.jsonl` is a BEIR dataset, read from that file;
 * - any other folder: its files that `include` matches (default `.txt` and `.md`) at any depth, each a document
 *   whose id is its path relative to the folder (with `/` separators). Links are not followed;
 * - a `.jsonl` file: JSON lines of `{"id" (or BEIR's "_id"), "text", "title"?}`;
 * - any other file that `include` matches: one document, whose id is the file's name.
 */
export async function* readCorpus(path: string, opts: CorpusOptions = {}): AsyncGenerator<Document> {
  const root = resolve(path);
  // Paths are matched with "/" separators on every OS (windows: false), as the globs are written.
  const included = picomatch([...(opts.include ?? DEFAULT_INCLUDE)], { nocase: true, windows: false });
  const excluded = picomatch([...(opts.exclude ?? [])], { nocase: true, windows: false });
  if (!(await stat(root)).isDirectory()) {
    if (extname(root).toLowerCase() === ".jsonl") return yield* readJsonl(root);
    if (!included(basename(root))) {
      throw new Error(`${path}: not a corpus: a folder, a .jsonl file, or a file that the include patterns ` +
        `(${(opts.include ?? DEFAULT_INCLUDE).join(", ")}) match`);
    }
    const read = await readText(root);
    if ("reason" in read) throw new Error(`${path}: ${read.reason}, so there is nothing to index`);
    return yield { id: basename(root), text: read.text, source: root };
  }
  const beir = join(root, "corpus.jsonl");
  if (await isFile(beir)) return yield* readJsonl(beir);
  for (const file of await folderFiles(root)) {
    const id = relative(root, file.path).split(sep).join("/");
    const skip = (reason: SkipReason) => opts.onSkip?.({ path: file.path, reason });
    if (!included(id)) skip("not included");
    else if (excluded(id)) skip("excluded");
    else if (!file.regular) skip("not a regular file");
    else {
      const read = await readText(file.path);
      if ("reason" in read) skip(read.reason);
      else yield { id, text: read.text, source: file.path };
    }
  }
}

/** The text of a file, or why it is not a document. */
async function readText(path: string): Promise<{ text: string } | { reason: "empty" | "not UTF-8 text" }> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(await readFile(path));
  } catch (e) {
    if (e instanceof TypeError) return { reason: "not UTF-8 text" };
    throw e;
  }
  return text.trim() === "" ? { reason: "empty" } : { text };
}

/** "skipped 5 files: 3 not included (2 .json, 1 .png), 2 empty"; "" when none was. */
export function describeSkipped(skipped: readonly SkippedFile[]): string {
  if (skipped.length === 0) return "";
  const byReason = new Map<SkipReason, SkippedFile[]>();
  for (const s of skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s]);
  const parts = [...byReason].map(([reason, files]) => {
    if (reason !== "not included") return `${files.length} ${reason}`;
    const byExt = new Map<string, number>();
    for (const f of files) {
      const ext = extname(f.path).toLowerCase() || "no extension";
      byExt.set(ext, (byExt.get(ext) ?? 0) + 1);
    }
    const exts = [...byExt].sort((a, b) => b[1] - a[1]);
    const shown = exts.slice(0, 5).map(([ext, n]) => `${n} ${ext}`).join(", ");
    return `${files.length} not included (${shown}${exts.length > 5 ? ", ..." : ""})`;
  });
  return `skipped ${skipped.length} file${skipped.length === 1 ? "" : "s"}: ${parts.join(", ")}`;
}

/**
 * Whether a document's `source` is in the corpus at `path`: a file under the folder, a line of the JSONL file, or
 * the file itself.
 */
export function isFromCorpus(path: string, source: string): boolean {
  const root = resolve(path);
  const at = resolve(source);
  return at === root || at.startsWith(root.endsWith(sep) ? root : root + sep) || (at.startsWith(root) && /^:\d+$/.test(at.slice(root.length)));
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

/** Every entry but folders under `dir`, at any depth, without following links. */
async function folderFiles(dir: string): Promise<{ path: string; regular: boolean }[]> {
  const out: { path: string; regular: boolean }[] = [];
  const walk = async (folder: string) => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out.push({ path, regular: entry.isFile() });
    }
  };
  await walk(dir);
  // Code-unit order rather than locale order, so that the order does not depend on the machine.
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
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
