// A streaming GGUF v3 writer (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). The header
// (metadata and tensor infos) is built in memory, since every tensor's offset must be known before any
// data is written; tensor data is then pulled from each tensor's producer in bounded chunks, so a model
// of any size passes through with only one chunk held at a time.
//
// Layout: "GGUF", version u32, tensor count u64, KV count u64, KV pairs, tensor infos, padding to the
// alignment, then the data blob, where each tensor starts at a multiple of the alignment.

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_type: how a metadata value is stored. */
export const GgufType = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7,
  string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
} as const;

export type GgufScalarType = Exclude<keyof typeof GgufType, "array">;

export type GgufValue =
  | { type: Exclude<GgufScalarType, "string" | "bool">; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: GgufScalarType; value: readonly (number | bigint | boolean | string)[] };

/** ggml_type of the tensor types this writer produces. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GgmlType;
/** Each type's block: values along the innermost dimension, and its bytes (ggml's blck_size and type_size). */
export const GGML_BLOCKS: Record<GgmlTypeName, { values: number; bytes: number }> = {
  F32: { values: 1, bytes: 4 }, F16: { values: 1, bytes: 2 }, BF16: { values: 1, bytes: 2 },
  // An f16 scale, then 32 int8 (Q8_0) or 32 4-bit values packed two a byte (Q4_0).
  Q8_0: { values: 32, bytes: 34 }, Q4_0: { values: 32, bytes: 18 },
};

export interface GgufTensor {
  name: string;
  type: GgmlTypeName;
  /** GGUF order: innermost (fastest-varying) dimension first, the reverse of a row-major shape. */
  dims: number[];
  /** Produces exactly the tensor's bytes, in order, by calling `emit` with chunks (awaited one at a time). */
  produce(emit: (bytes: Uint8Array) => Promise<void>): Promise<void>;
}

/** Where the file's bytes go, in order; each write is awaited before the next. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

export interface GgufProgress {
  tensor: string;
  bytes: number;
  totalBytes: number;
}

const SCALAR_BYTES: Record<Exclude<GgufScalarType, "string">, number> = {
  uint8: 1, int8: 1, bool: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, uint64: 8, int64: 8, float64: 8,
};

const utf8 = new TextEncoder();

/** A little-endian byte builder that grows as needed (the header can be megabytes: tokenizer vocab and merges). */
class HeaderBuilder {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  // reserve() may replace buf and view, so it runs before they are read.
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }

  u64(v: number | bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }

  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }

  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }

  scalar(type: GgufScalarType, v: number | bigint | boolean | string, key: string): void {
    if (type === "string") {
      if (typeof v !== "string") throw new Error(`GGUF metadata "${key}": expected a string, got ${typeof v}`);
      this.string(v);
      return;
    }
    if (type === "bool") {
      if (typeof v !== "boolean") throw new Error(`GGUF metadata "${key}": expected a boolean, got ${typeof v}`);
      const at = this.reserve(1);
      this.buf[at] = v ? 1 : 0;
      return;
    }
    if (typeof v !== "number" && typeof v !== "bigint") throw new Error(`GGUF metadata "${key}": expected a number, got ${typeof v}`);
    checkRange(type, v, key);
    const at = this.reserve(SCALAR_BYTES[type]);
    const n = Number(v);
    switch (type) {
      case "uint8": this.view.setUint8(at, n); break;
      case "int8": this.view.setInt8(at, n); break;
      case "uint16": this.view.setUint16(at, n, true); break;
      case "int16": this.view.setInt16(at, n, true); break;
      case "uint32": this.view.setUint32(at, n, true); break;
      case "int32": this.view.setInt32(at, n, true); break;
      case "float32": this.view.setFloat32(at, n, true); break;
      case "float64": this.view.setFloat64(at, n, true); break;
      case "uint64": this.view.setBigUint64(at, BigInt(v), true); break;
      case "int64": this.view.setBigInt64(at, BigInt(v), true); break;
    }
  }

  padTo(alignment: number): void {
    this.reserve((alignment - (this.length % alignment)) % alignment);
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const INT_RANGES: Partial<Record<GgufScalarType, [bigint, bigint]>> = {
  uint8: [0n, 0xffn], int8: [-0x80n, 0x7fn], uint16: [0n, 0xffffn], int16: [-0x8000n, 0x7fffn],
  uint32: [0n, 0xffffffffn], int32: [-0x80000000n, 0x7fffffffn],
  uint64: [0n, (1n << 64n) - 1n], int64: [-(1n << 63n), (1n << 63n) - 1n],
};

// DataView setters wrap out-of-range integers silently; a wrapped token id or dimension would load as garbage.
function checkRange(type: GgufScalarType, v: number | bigint, key: string): void {
  const range = INT_RANGES[type];
  if (!range) return;
  if (typeof v === "number" && !Number.isInteger(v)) throw new Error(`GGUF metadata "${key}": ${v} is not an integer (${type})`);
  const b = BigInt(v);
  if (b < range[0] || b > range[1]) throw new Error(`GGUF metadata "${key}": ${v} is out of range for ${type}`);
}

function tensorBytes(t: GgufTensor): number {
  const { values, bytes } = GGML_BLOCKS[t.type];
  if (t.dims[0] % values !== 0) throw new Error(`GGUF: tensor "${t.name}" is ${t.type}, whose blocks of ${values} need a multiple of ${values} values per row, not ${t.dims[0]}`);
  return (t.dims.reduce((a, d) => a * d, 1) / values) * bytes;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** The header bytes (through the padding before the data blob) and each tensor's offset within the blob. */
export function ggufHeader(metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[]) {
  const alignValue = metadata.get("general.alignment");
  const alignment = alignValue === undefined ? GGUF_DEFAULT_ALIGNMENT : Number(alignValue.value);
  if (alignValue !== undefined && (alignValue.type !== "uint32" || alignment <= 0 || alignment % 8 !== 0)) {
    throw new Error(`GGUF metadata "general.alignment" must be a uint32 multiple of 8, got ${JSON.stringify(alignValue)}`);
  }
  const h = new HeaderBuilder();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(metadata.size);
  for (const [key, v] of metadata) {
    h.string(key);
    h.u32(GgufType[v.type]);
    if (v.type === "array") {
      h.u32(GgufType[v.itemType]);
      h.u64(v.value.length);
      for (const item of v.value) h.scalar(v.itemType, item, key);
    } else {
      h.scalar(v.type, v.value, key);
    }
  }
  const offsets: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`GGUF: tensor "${t.name}" is listed twice`);
    names.add(t.name);
    if (t.dims.length === 0 || t.dims.length > 4 || !t.dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new Error(`GGUF: tensor "${t.name}" has dims [${t.dims}]; ggml needs 1 to 4 positive dimensions`);
    }
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(GgmlType[t.type]);
    h.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + tensorBytes(t), alignment);
  }
  h.padTo(alignment);
  return { header: h.finish(), offsets, alignment, dataBytes: offset };
}

/**
 * Writes a GGUF file to `sink`: metadata in the map's order, tensors in the array's order. Each tensor's
 * producer must emit exactly dims × type-size bytes. Returns the total number of bytes written.
 */
export async function writeGguf(sink: ByteSink, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[],
  onProgress?: (p: GgufProgress) => void): Promise<number> {
  const { header, alignment, dataBytes } = ggufHeader(metadata, tensors);
  await sink.write(header);
  const totalBytes = tensors.reduce((a, t) => a + tensorBytes(t), 0);
  let done = 0;
  for (const t of tensors) {
    const want = tensorBytes(t);
    let got = 0;
    await t.produce(async (bytes) => {
      got += bytes.length;
      if (got > want) throw new Error(`GGUF: tensor "${t.name}" produced more than its ${want} bytes`);
      await sink.write(bytes);
      done += bytes.length;
      onProgress?.({ tensor: t.name, bytes: done, totalBytes });
    });
    if (got !== want) throw new Error(`GGUF: tensor "${t.name}" produced ${got} bytes, expected ${want}`);
    const pad = alignUp(want, alignment) - want;
    if (pad > 0) await sink.write(new Uint8Array(pad));
  }
  return header.length + dataBytes;
}
