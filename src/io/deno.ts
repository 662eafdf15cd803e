// Deno's file API behind the ModelDir interface.
import type { ByteSource, ModelDir } from "./files.ts";

// Deno's global is typed only under Deno's own type checker; this module is never loaded by Node.
declare const Deno: any;

export async function openDenoFile(path: string): Promise<ByteSource> {
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
    readText: (file) => Deno.readTextFile(join(file)),
    open: (file) => openDenoFile(join(file)),
  };
}
