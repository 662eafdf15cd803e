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
  readText(file: string): Promise<string>;
  open(file: string): Promise<ByteSource>;
}

export async function readJson(dir: ModelDir, file: string): Promise<any> {
  const text = await dir.readText(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${dir.name}/${file}: invalid JSON (${(e as Error).message})`);
  }
}
