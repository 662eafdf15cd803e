// Deno's file API behind the ModelDir interface.
import { decodeText, MAX_TEXT_BYTES, textTooLarge, type ByteSource, type ModelDir } from "./files.ts";

// Deno's global is typed only under Deno's own type checker; this module is never loaded by Node.
declare const Deno: any;

/**
 * Refuses what is not a regular file (following links) before opening it: opening a FIFO would wait for a writer
 * forever, and a directory or device gives errors that name no file.
 */
async function checkRegular(path: string): Promise<void> {
  const info = await Deno.stat(path);
  if (!info.isFile) throw new Error(`${path}: is ${info.isDirectory ? "a directory" : "a device, FIFO or socket"}, not a regular file`);
}

export async function openDenoFile(path: string): Promise<ByteSource> {
  await checkRegular(path);
  const file = await Deno.open(path, { read: true });
  const { size } = await file.stat();
  return {
    name: path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      const out = new Uint8Array(length);
      await file.seek(offset, Deno.SeekMode.Start);
      for (let done = 0; done < length;) {
        const n = await file.read(out.subarray(done));
        if (n === null) throw new Error(`${path}: unexpected end of file at byte ${offset + done} (file has ${size} bytes)`);
        done += n;
      }
      return out;
    },
    async close() {
      file.close();
    },
  };
}

async function readDenoText(path: string, maxBytes: number): Promise<string> {
  const source = await openDenoFile(path);
  try {
    if (source.size > maxBytes) throw textTooLarge(path, source.size, maxBytes);
    return decodeText(path, await source.read(0, source.size));
  } finally {
    await source.close();
  }
}

export function denoModelDir(path: string): ModelDir {
  const root = path.replace(/\/+$/, "");
  const join = (file: string) => `${root}/${file}`;
  return {
    name: root,
    async exists(file) {
      try {
        await Deno.stat(join(file));
        return true;
      } catch {
        return false;
      }
    },
    readText: (file, maxBytes = MAX_TEXT_BYTES) => readDenoText(join(file), maxBytes),
    open: (file) => openDenoFile(join(file)),
  };
}
