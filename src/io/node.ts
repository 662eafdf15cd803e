// Node's file API behind the ModelDir interface.
import { constants } from "node:fs";
import { open as openFile, stat, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { decodeText, MAX_TEXT_BYTES, textTooLarge, type ByteSource, type ModelDir } from "./files.ts";

// Opening a FIFO for reading would wait for a writer forever; O_NONBLOCK returns at once (and changes nothing for a
// regular file), so that the check below can refuse it. Windows has no such flag and no such files.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/** Opens a regular file (following links); a directory, device, FIFO or socket is refused by name. */
async function openRegular(path: string): Promise<{ handle: FileHandle; size: number }> {
  const handle = await openFile(path, OPEN_FLAGS);
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      const kind = info.isDirectory() ? "a directory" : info.isFIFO() ? "a FIFO" : info.isSocket() ? "a socket" : "a device";
      throw new Error(`${path}: is ${kind}, not a regular file`);
    }
    return { handle, size: info.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

async function readExactly(handle: FileHandle, path: string, size: number, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, length - done, offset + done);
    if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${offset + done} (file has ${size} bytes)`);
    done += bytesRead;
  }
  return out;
}

export async function openNodeFile(path: string): Promise<ByteSource> {
  const { handle, size } = await openRegular(path);
  return {
    name: path,
    size,
    read: (offset: number, length: number) => readExactly(handle, path, size, offset, length),
    close: () => handle.close(),
  };
}

/** A whole text file, its size checked before anything is read. */
async function readNodeText(path: string, maxBytes = MAX_TEXT_BYTES): Promise<string> {
  const { handle, size } = await openRegular(path);
  try {
    if (size > maxBytes) throw textTooLarge(path, size, maxBytes);
    return decodeText(path, await readExactly(handle, path, size, 0, size));
  } finally {
    await handle.close();
  }
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
    readText: (file, maxBytes) => readNodeText(join(root, file), maxBytes),
    open: (file) => openNodeFile(join(root, file)),
  };
}
