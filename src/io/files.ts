// Where model files come from. The engine reads through this interface only, so that Node, Deno and a
// browser (File objects from a directory picker) share one loader.

/** Random access to one file's bytes, read in slices so a multi-GB file is never held whole in memory. */
export interface ByteSource {
  /** A name for error messages (a path, or a file name in the browser). */
  readonly name: string;
  readonly size: number;
  /** Reads exactly `length` bytes at `offset`; rejects if the file is shorter. */
  read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>>;
  /** Releases the file (a no-op where nothing is held open). */
  close(): Promise<void>;
}

/** A model directory: config.json, safetensors files, tokenizer files. */
export interface ModelDir {
  readonly name: string;
  exists(file: string): Promise<boolean>;
  /** A whole UTF-8 file; refused when larger than `maxBytes` (default MAX_TEXT_BYTES) or not a regular file. */
  readText(file: string, maxBytes?: number): Promise<string>;
  open(file: string): Promise<ByteSource>;
}

// The largest tokenizer.json files published (250k-token vocabularies) are about 35 MB; JSON of this size already
// takes several times as much memory once parsed, so a larger text file is more likely a mistake than a model file.
export const MAX_TEXT_BYTES = 128 * 1024 * 1024;

export function textTooLarge(name: string, size: number, maxBytes: number): Error {
  return new Error(`${name}: ${size} bytes is more than the ${maxBytes} bytes read from a text file`);
}

/** UTF-8 bytes to text; invalid UTF-8 is refused (rather than read as U+FFFD) since no model file should hold it. */
export function decodeText(name: string, bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    throw new Error(`${name}: not valid UTF-8 text`);
  }
}

/**
 * JSON.parse's message without the excerpt of the input that V8 quotes for some errors: a file's bytes are never
 * echoed, since an error can reach a log or an HTTP client.
 */
export function jsonErrorMessage(e: unknown): string {
  const message = (e as Error).message;
  const token = /^Unexpected token .*is not valid JSON$/s.test(message);
  return token ? "unexpected character" : message;
}

/** A value from a file, for an error message: its JSON, cut short; one too deeply nested to write is described. */
export function showValue(value: unknown): string {
  // JSON.stringify writes Infinity (what JSON.parse makes of 1e999) as null.
  if (typeof value === "number") return String(value);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    return "a value nested too deeply to show";
  }
  if (text === undefined) return String(value);
  return text.length > 100 ? `${text.slice(0, 100)}... (${text.length} characters)` : text;
}

export async function readJson(dir: ModelDir, file: string, maxBytes?: number): Promise<any> {
  const text = await dir.readText(file, maxBytes);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${dir.name}/${file}: invalid JSON (${jsonErrorMessage(e)})`);
  }
}
