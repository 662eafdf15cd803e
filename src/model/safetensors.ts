// Safetensors reader: https://huggingface.co/docs/safetensors (8-byte LE header length, JSON header,
// raw little-endian data). Only the header is read eagerly; tensor data is read on demand so multi-GB
// weights can be streamed to the GPU without being held in memory.
import { readJson, type ByteSource, type ModelDir } from "../io/files.ts";

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

/** Parses and fully validates the header; reads only the header bytes. */
export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
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
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) fail("header is not a JSON object");

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
    if (typeof dtype !== "string") bad(`missing or non-string dtype (got ${JSON.stringify(dtype)})`);
    if (!isDType(dtype)) bad(`unsupported dtype "${dtype}" (supported: ${SUPPORTED})`);
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      bad(`shape must be an array of non-negative integers (got ${JSON.stringify(shape)})`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt) || offsets[0] > offsets[1]) {
      bad(`data_offsets must be two non-negative integers [begin, end] with begin <= end (got ${JSON.stringify(offsets)})`);
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

  // Once sorted by start, any overlap between non-empty ranges also shows up between neighbours.
  ranges.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    const [p, r] = [ranges[i - 1], ranges[i]];
    if (r.begin < p.end) {
      fail(`tensors "${p.name}" [${p.begin},${p.end}] and "${r.name}" [${r.begin},${r.end}] have overlapping data offsets`);
    }
  }

  return { source, tensors, metadata };
}

/**
 * Opens model.safetensors, or every shard listed in model.safetensors.index.json ("weight_map": tensor name
 * -> shard file); returns one merged map. Errors name the file. A tensor listed in the index but missing
 * from its shard is an error; a name appearing in two shards is an error.
 */
export async function openModelWeights(dir: ModelDir): Promise<Map<string, TensorInfo>> {
  if (!(await dir.exists(INDEX_FILE))) {
    if (!(await dir.exists(SINGLE_FILE))) throw new Error(`${dir.name}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found`);
    return (await openSafetensors(await dir.open(SINGLE_FILE))).tensors;
  }

  const indexName = `${dir.name}/${INDEX_FILE}`;
  const index = await readJson(dir, INDEX_FILE);
  const weightMap: unknown = isPlainObject(index) ? index.weight_map : undefined;
  if (!isPlainObject(weightMap)) throw new Error(`${indexName}: missing "weight_map" object`);
  const listed = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string") throw new Error(`${indexName}: weight_map entry "${name}" is not a file name`);
    listed.set(shard, [...(listed.get(shard) ?? []), name]);
  }

  const shardNames = [...listed.keys()].sort();
  const shards = await Promise.all(shardNames.map(async (f) => openSafetensors(await dir.open(f))));

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
