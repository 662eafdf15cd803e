// Node's file API behind the ModelDir interface.
import { open as openFile, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { ByteSource, ModelDir } from "./files.ts";

export async function openNodeFile(path: string): Promise<ByteSource> {
  const handle = await openFile(path, "r");
  const { size } = await handle.stat();
  return {
    name: path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${offset + done} (file has ${size} bytes)`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}

export function nodeModelDir(path: string): ModelDir {
  const root = resolve(path);
  return {
    name: root,
    async exists(file) {
      try {
        await stat(join(root, file));
        return true;
      } catch {
        return false;
      }
    },
    readText: (file) => readFile(join(root, file), "utf8"),
    open: (file) => openNodeFile(join(root, file)),
  };
}
