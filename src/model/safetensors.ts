// Safetensors reader: https://huggingface.co/docs/safetensors (8-byte LE header length, JSON header,
// raw little-endian data). Only the header is read eagerly; tensor data is read on demand so multi-GB
// weights can be streamed to the GPU without being held in memory.
import { jsonErrorMessage, readJson, showValue, type ByteSource, type ModelDir } from "../io/files.ts";

export type DType = "BF16" | "F16" | "F32" | "I32";

export const DTYPE_BYTES: Record<DType, number> = { BF16: 2, F16: 2, F32: 4, I32: 4 };

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** absolute byte offset in the file */
  offset: number;
  byteLength: number;
  source: ByteSource;
}

export interface SafetensorsFile {
  source: ByteSource;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

// The reference implementation's limit; it also stops a corrupt length from making us read gigabytes.
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = "__metadata__";
const SINGLE_FILE = "model.safetensors";
const INDEX_FILE = "model.safetensors.index.json";

const SUPPORTED = Object.keys(DTYPE_BYTES).join(", ");

function isDType(x: string): x is DType {
  return Object.hasOwn(DTYPE_BYTES, x);
}

function isNonNegativeInt(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

function failIn(source: ByteSource, msg: string): never {
  throw new Error(`${source.name}: ${msg}`);
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * The first key that appears twice in one object of `json` (valid JSON), with the top-level key it lies under:
 * JSON.parse keeps the last silently, where the reference reader refuses the file.
 */
function firstDuplicateKey(json: string): { key: string; within?: string } | undefined {
  // The keys seen in each open object (null for an array).
  const open: (Set<string> | null)[] = [];
  let expectKey = false;
  let outer: string | undefined;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === "\\" ? 2 : 1;
      const keys = open.at(-1);
      if (expectKey && keys) {
        const key: string = JSON.parse(json.slice(i, j + 1));
        if (keys.has(key)) return { key, within: open.length > 1 ? outer : undefined };
        keys.add(key);
        if (open.length === 1) outer = key;
        expectKey = false;
      }
      i = j;
    } else if (c === "{" || c === "[") {
      open.push(c === "{" ? new Set() : null);
      expectKey = c === "{";
    } else if (c === "}" || c === "]") {
      open.pop();
    } else if (c === ",") {
      expectKey = open.at(-1) != null;
    }
  }
  return undefined;
}

/**
 * Parses and fully validates the header; reads only the header bytes. The file is the caller's to close once it is
 * done with the tensors; a header that is refused closes it here, since no one else holds it then (callers pass a
 * source they have just opened), and an unclosed handle is closed by the garbage collector, with a warning.
 */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  try {
    return await readHeader(source);
  } catch (e) {
    await source.close();
    throw e;
  }
}

async function readHeader(source: ByteSource): Promise<SafetensorsFile> {
  const fail: (msg: string) => never = (msg) => failIn(source, msg);

  if (source.size < 8) fail(`file of ${source.size} bytes is too short for a safetensors header (truncated?)`);
  const lenBytes = await source.read(0, 8);
  // Compared as BigInt so that a corrupt length above 2^53 is reported exactly instead of being rounded.
  const headerLen = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(source.size - 8)) fail(`header length ${headerLen} beyond the file of ${source.size} bytes`);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const n = Number(headerLen);
  const dataStart = 8 + n;
  const dataSize = source.size - dataStart;

  const headerBytes = await source.read(8, n);
  if (headerBytes[0] === 0xef && headerBytes[1] === 0xbb && headerBytes[2] === 0xbf) {
    fail("header starts with a UTF-8 byte-order mark, which the format does not allow");
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    fail("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON (${jsonErrorMessage(e)})`);
  }
  const duplicate = firstDuplicateKey(text);
  if (duplicate) fail(`header has the key "${duplicate.key}" twice${duplicate.within ? ` in "${duplicate.within}"` : ""}`);
  if (!isPlainObject(header)) fail("header is not a JSON object");
  // As in the reference reader: the JSON begins at once (trailing spaces pad the header to 8 bytes).
  if (headerBytes[0] !== 0x7b) fail('header does not start with "{"');

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const ranges: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(entry)) fail(`${METADATA_KEY} is not an object`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") fail(`${METADATA_KEY} entry "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }

    const bad: (msg: string) => never = (msg) => failIn(source, `tensor "${name}": ${msg}`);
    if (!isPlainObject(entry)) bad("entry is not an object");
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== "string") bad(`missing or non-string dtype (got ${showValue(dtype)})`);
    if (!isDType(dtype)) bad(`unsupported dtype "${dtype}" (supported: ${SUPPORTED})`);
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      bad(`shape must be an array of non-negative integers (got ${showValue(shape)})`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt) || offsets[0] > offsets[1]) {
      bad(`data_offsets must be two non-negative integers [begin, end] with begin <= end (got ${showValue(offsets)})`);
    }
    const [begin, end] = offsets;

    // BigInt so that a huge shape cannot round to a matching byte count.
    const expected = shape.reduce((acc: bigint, d: number) => acc * BigInt(d), BigInt(DTYPE_BYTES[dtype]));
    if (BigInt(end - begin) !== expected) {
      bad(
        `data offsets [${begin},${end}] hold ${end - begin} bytes, which disagrees with dtype × shape ` +
          `(${dtype} × [${shape.join(",")}] = ${expected} bytes)`,
      );
    }
    if (end > dataSize) {
      bad(`data offsets [${begin},${end}] out of range: data section has ${dataSize} bytes (file truncated?)`);
    }

    tensors.set(name, { name, dtype, shape: [...shape], offset: dataStart + begin, byteLength: end - begin, source });
    if (end > begin) ranges.push({ name, begin, end });
  }

  // As the reference writer lays them out, non-empty tensors must tile the data section exactly: a gap or trailing
  // bytes are data that no tensor describes. Once sorted by start, any overlap also shows up between neighbours.
  ranges.sort((a, b) => a.begin - b.begin);
  let end = 0;
  let last: (typeof ranges)[number] | undefined;
  for (const r of ranges) {
    if (r.begin < end) {
      fail(`tensors "${last!.name}" [${last!.begin},${last!.end}] and "${r.name}" [${r.begin},${r.end}] have overlapping data offsets`);
    }
    if (r.begin > end) {
      fail(`${r.begin - end} bytes of the data section at [${end},${r.begin}] belong to no tensor ` +
        `(a gap ${last ? `after "${last.name}"` : "at the start"}, before "${r.name}")`);
    }
    end = r.end;
    last = r;
  }
  if (end < dataSize) fail(`${dataSize - end} bytes after the last tensor's data belong to no tensor`);

  return { source, tensors, metadata };
}

async function openShard(dir: ModelDir, file: string): Promise<SafetensorsFile> {
  return openSafetensors(await dir.open(file));
}

/**
 * The index names shards by paths relative to the model folder; one that is absolute or climbs out with ".." could
 * make the loader read, and report on, any file the process can read.
 */
function checkShardPath(indexName: string, tensor: string, shard: string): void {
  const segments = shard.split("/");
  if (/^[A-Za-z]:|[\\\0]/.test(shard) || segments.some((s) => s === "" || s === "..")) {
    throw new Error(`${indexName}: weight_map entry "${tensor}" names the shard "${shard}", which is not a file inside the model folder`);
  }
}

/**
 * Opens model.safetensors, or every shard listed in model.safetensors.index.json ("weight_map": tensor name
 * -> shard file); returns one merged map. Errors name the file. A tensor listed in the index but missing
 * from its shard is an error; a name appearing in two shards is an error. On an error no file is left open.
 */
export async function openModelWeights(dir: ModelDir): Promise<Map<string, TensorInfo>> {
  if (!(await dir.exists(INDEX_FILE))) {
    if (!(await dir.exists(SINGLE_FILE))) throw new Error(`${dir.name}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found`);
    return (await openShard(dir, SINGLE_FILE)).tensors;
  }

  const indexName = `${dir.name}/${INDEX_FILE}`;
  const index = await readJson(dir, INDEX_FILE);
  const weightMap: unknown = isPlainObject(index) ? index.weight_map : undefined;
  if (!isPlainObject(weightMap)) throw new Error(`${indexName}: missing "weight_map" object`);
  const listed = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string") throw new Error(`${indexName}: weight_map entry "${name}" is not a file name`);
    checkShardPath(indexName, name, shard);
    const names = listed.get(shard);
    if (names) names.push(name);
    else listed.set(shard, [name]);
  }

  const shardNames = [...listed.keys()].sort();
  const opened = await Promise.allSettled(shardNames.map((f) => openShard(dir, f)));
  const shards = opened.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  try {
    const failed = opened.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const merged = new Map<string, TensorInfo>();
    shardNames.forEach((shardName, i) => {
      const { source, tensors } = shards[i];
      for (const name of listed.get(shardName)!) {
        if (!tensors.has(name)) {
          throw new Error(`${indexName}: tensor "${name}" is listed in ${shardName}, but ${source.name} does not contain it`);
        }
      }
      for (const [name, info] of tensors) {
        const prev = merged.get(name);
        if (prev) throw new Error(`${dir.name}: tensor "${name}" appears in both ${prev.source.name} and ${source.name}`);
        merged.set(name, info);
      }
    });
    return merged;
  } catch (e) {
    await Promise.all(shards.map((s) => s.source.close()));
    throw e;
  }
}

/** Reads a whole tensor (for small tensors like golden values) into a typed array: F32 -> Float32Array, I32 -> Int32Array, BF16/F16 -> Float32Array (widened). */
export async function readTensor(t: TensorInfo): Promise<Float32Array | Int32Array> {
  const bytes = await t.source.read(t.offset, t.byteLength);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = t.byteLength / DTYPE_BYTES[t.dtype];
  switch (t.dtype) {
    case "I32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, true);
      return out;
    }
    case "F32": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case "BF16":
    case "F16": {
      // Widening writes float32 bit patterns, so NaN payloads and -0 survive unchanged.
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      const widen = t.dtype === "BF16" ? (h: number) => h << 16 : halfToFloatBits;
      for (let i = 0; i < count; i++) bits[i] = widen(view.getUint16(2 * i, true));
      return out;
    }
  }
}

/** IEEE binary16 bits -> binary32 bits; exact for every input (float32 has more range and precision). */
export function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return sign | 0x7f800000 | (mant << 13);
  if (exp !== 0) return sign | ((exp + 127 - 15) << 23) | (mant << 13);
  if (mant === 0) return sign;
  // A half subnormal is a normal float32: shift the leading 1 into the implicit bit, lowering the exponent.
  let e = 127 - 15 + 1;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return sign | (e << 23) | ((mant & 0x3ff) << 13);
}

/**
 * Streams a tensor's bytes in chunks of at most `chunkBytes` (default 16 MiB), calling
 * `sink(bytes, byteOffsetWithinTensor)` for each and awaiting it; bytes may reuse one buffer between calls
 * so sink must consume them before returning. A zero-size tensor produces no calls.
 */
export async function streamTensor(
  t: TensorInfo,
  sink: (bytes: Uint8Array<ArrayBuffer>, at: number) => void | Promise<void>,
  chunkBytes = 16 * 1024 * 1024,
): Promise<void> {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) {
    throw new Error(`streamTensor(${t.name}): chunkBytes must be a positive integer (got ${chunkBytes})`);
  }
  for (let at = 0; at < t.byteLength; at += chunkBytes) {
    const n = Math.min(chunkBytes, t.byteLength - at);
    await sink(await t.source.read(t.offset + at, n), at);
  }
}
