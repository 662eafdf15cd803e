// Browser file access behind the ModelDir interface: the files of a picked folder, or a base URL read with HTTP
// Range requests. Both read a file one slice at a time, so a multi-GB safetensors file is never copied whole
// into JS memory (no ArrayBuffer could hold one past 2 or 4 GiB anyway) on its way to the GPU.
import { decodeText, MAX_TEXT_BYTES, textTooLarge, type ByteSource, type ModelDir } from "./files.ts";

function endOfFile(name: string, offset: number, length: number, size: number): Error {
  return new Error(`${name}: unexpected end of file reading ${length} bytes at byte ${offset} (file has ${size} bytes)`);
}

/** A File (or any Blob) read through Blob.slice, which reads only the requested bytes from disk. */
export function blobSource(blob: Blob, name: string): ByteSource {
  return {
    name,
    size: blob.size,
    async read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      if (offset + length > blob.size) throw endOfFile(name, offset, length, blob.size);
      let bytes: ArrayBuffer;
      try {
        bytes = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        // Chromium's NotReadableError names no file, and its usual cause is the file changing after the pick.
        throw new Error(`${name}: could not be read (${(e as Error).message}); was it changed or moved after the folder was picked?`);
      }
      if (bytes.byteLength !== length) throw endOfFile(name, offset, length, offset + bytes.byteLength);
      return new Uint8Array(bytes);
    },
    async close() {},
  };
}

/** A model directory from files keyed by their path inside it ("config.json", "sub/x.safetensors"). */
export function filesModelDir(name: string, files: ReadonlyMap<string, Blob>): ModelDir {
  const get = (file: string): Blob => {
    const blob = files.get(file);
    if (!blob) throw new Error(`${name}/${file}: no such file in the picked folder`);
    return blob;
  };
  return {
    name,
    exists: async (file) => files.has(file),
    async readText(file, maxBytes = MAX_TEXT_BYTES) {
      const blob = get(file);
      if (blob.size > maxBytes) throw textTooLarge(`${name}/${file}`, blob.size, maxBytes);
      return decodeText(`${name}/${file}`, await blobSource(blob, `${name}/${file}`).read(0, blob.size));
    },
    open: async (file) => blobSource(get(file), `${name}/${file}`),
  };
}

/**
 * The folder chosen with `<input type="file" webkitdirectory>`: every file's webkitRelativePath starts with the
 * folder's own name, which becomes the directory's name and is left out of the paths.
 */
export function pickedFolderModelDir(files: Iterable<File>): ModelDir {
  const byPath = new Map<string, Blob>();
  let folder: string | undefined;
  for (const file of files) {
    const path = file.webkitRelativePath || file.name;
    const slash = path.indexOf("/");
    folder ??= slash >= 0 ? path.slice(0, slash) : "";
    byPath.set(slash >= 0 ? path.slice(slash + 1) : path, file);
  }
  if (folder === undefined) throw new Error("the picked folder is empty");
  return filesModelDir(folder || "picked files", byPath);
}

async function fetchOk(url: URL, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new Error(`${url}: ${(e as Error).message}`);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  }
  return res;
}

/** Fetches bytes [first, last] of a file, refusing a server that answers with anything but exactly that range. */
async function fetchRange(url: URL, first: number, last: number): Promise<{ bytes: ArrayBuffer; total: number }> {
  const res = await fetchOk(url, { headers: { Range: `bytes=${first}-${last}` } });
  const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get("Content-Range") ?? "");
  if (res.status !== 206 || !range) {
    // Without this check a server that ignores Range would send the whole (possibly multi-GB) file.
    await res.body?.cancel();
    throw new Error(`${url}: the server answered a Range request with HTTP ${res.status}` +
      `${range ? "" : " and no Content-Range"}; loading from a URL needs a server that supports Range requests`);
  }
  if (Number(range[1]) !== first) {
    await res.body?.cancel();
    throw new Error(`${url}: asked for bytes from ${first}, the server sent ${range[1]}-${range[2]}`);
  }
  return { bytes: await res.arrayBuffer(), total: Number(range[3]) };
}

/** A whole text file over HTTP, stopped as soon as it proves larger than `maxBytes` (Content-Length can be absent). */
async function fetchText(url: URL, maxBytes: number): Promise<string> {
  const res = await fetchOk(url);
  const declared = Number(res.headers.get("Content-Length") ?? 0);
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw textTooLarge(url.href, declared, maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  // A 204 has no body.
  const reader = res.body?.getReader();
  for (;;) {
    const { done, value } = (await reader?.read()) ?? { done: true };
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader!.cancel();
      throw textTooLarge(url.href, size, maxBytes);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return decodeText(url.href, bytes);
}

/** A file over HTTP, read with one Range request per slice. */
export async function urlSource(url: URL): Promise<ByteSource> {
  const { total: size } = await fetchRange(url, 0, 0);
  const name = url.href;
  return {
    name,
    size,
    async read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      if (offset + length > size) throw endOfFile(name, offset, length, size);
      if (length === 0) return new Uint8Array(0);
      const { bytes } = await fetchRange(url, offset, offset + length - 1);
      if (bytes.byteLength !== length) throw endOfFile(name, offset, length, offset + bytes.byteLength);
      return new Uint8Array(bytes);
    },
    async close() {},
  };
}

/** A model directory served over HTTP (e.g. a local static server); `base` is the folder's URL. */
export function urlModelDir(base: string | URL): ModelDir {
  const root = new URL(base);
  if (!root.pathname.endsWith("/")) root.pathname += "/";
  const url = (file: string) => new URL(file, root);
  return {
    name: root.href.replace(/\/$/, ""),
    async exists(file) {
      const res = await fetch(url(file), { method: "HEAD" });
      return res.ok;
    },
    readText: (file, maxBytes = MAX_TEXT_BYTES) => fetchText(url(file), maxBytes),
    open: (file) => urlSource(url(file)),
  };
}
