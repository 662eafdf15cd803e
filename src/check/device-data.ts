// The float64 checks' data on the device: storage buffers from typed arrays, read-back, and weight matrices from
// row-major values in the GPU weight layout (written by the host, from the layout's definition, so that kernels
// reading it are checked independently of the relayout kernel).
import type { QuantDType, WeightDType } from "../gpu/kernel.ts";
import { DTYPE_BYTES, type GpuMatrix } from "../gpu/matrix.ts";
import { encodeWeights, layoutQuantized, layoutWeights } from "./reference.ts";

// GPUBufferUsage / GPUMapMode are globals only once nodeGpu() has installed Dawn's; these are the
// spec's values, usable at module load.
const STORAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08 /* COPY_DST */;
const MAP_READ = 0x01;
const COPY_DST = 0x08;
const MAP_MODE_READ = 0x01;

/**
 * A storage buffer (also a copy source and destination) holding data, zero-padded to a multiple of
 * 16 bytes (kernels may bind it as array<vec4u>).
 */
export function upload(device: GPUDevice, data: ArrayBufferView<ArrayBuffer>, label = "check data"): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
  const buffer = device.createBuffer({ label, size, usage: STORAGE });
  if (data.byteLength === size) {
    device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  } else {
    const padded = new Uint8Array(size);
    padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    device.queue.writeBuffer(buffer, 0, padded);
  }
  return buffer;
}

export function uploadF32(device: GPUDevice, values: ArrayLike<number>, label?: string): GPUBuffer {
  return upload(device, Float32Array.from(values), label);
}

export function uploadU32(device: GPUDevice, values: ArrayLike<number>, label?: string): GPUBuffer {
  return upload(device, Uint32Array.from(values), label);
}

/** A zero-filled storage buffer of `elements` 32-bit words (padded to a multiple of 16 bytes). */
export function zeros(device: GPUDevice, elements: number, label = "check zeros"): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(16, Math.ceil(elements / 4) * 16), usage: STORAGE });
}

/** Copies `bytes` (default: all) of a buffer back to the host once queued work is done. */
export async function readBytes(device: GPUDevice, src: GPUBuffer, bytes = src.size): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = device.createBuffer({ size, usage: MAP_READ | COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_MODE_READ);
  const copy = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return copy;
}

/** The first `elements` floats of a buffer (default: all of it, including any padding from upload()). */
export async function readF32(device: GPUDevice, src: GPUBuffer, elements = src.size / 4): Promise<Float32Array> {
  return new Float32Array(await readBytes(device, src, elements * 4));
}

export async function readU32(device: GPUDevice, src: GPUBuffer, elements = src.size / 4): Promise<Uint32Array> {
  return new Uint32Array(await readBytes(device, src, elements * 4));
}

export interface MatrixOptions {
  /** Split into parts of at most this many rows (as WeightUploader does for a small binding limit). */
  maxPartRows?: number;
  /** Explicit part sizes (must sum to rows); overrides maxPartRows. */
  partRows?: number[];
}

/**
 * A GpuMatrix [rows, cols] from row-major values stored in dtype, in the GPU weight layout (see
 * layoutWeights), each part laid out on its own. Values are rounded to the dtype (nearest even);
 * pass quantize()d values so that a host reference sees exactly the stored numbers.
 */
export function gpuMatrix(device: GPUDevice, name: string, values: ArrayLike<number>, rows: number, cols: number,
  dtype: WeightDType, opts: MatrixOptions = {}): GpuMatrix {
  const sizes = partSizes(name, values, rows, cols, opts);
  const bytes = encodeWeights(values, dtype);
  const rowBytes = cols * DTYPE_BYTES[dtype];
  const parts: GpuMatrix["parts"] = [];
  let row0 = 0;
  for (const n of sizes) {
    const slice = layoutWeights(bytes.subarray(row0 * rowBytes, (row0 + n) * rowBytes), n, cols, dtype);
    parts.push({ buffer: upload(device, slice, `${name}[${row0}:${row0 + n}]`), row0, rows: n });
    row0 += n;
  }
  return { name, dtype, rows, cols, parts };
}

function partSizes(name: string, values: ArrayLike<number>, rows: number, cols: number, opts: MatrixOptions): number[] {
  if (values.length !== rows * cols) throw new Error(`matrix ${name}: ${values.length} values for [${rows}, ${cols}]`);
  let sizes = opts.partRows;
  if (!sizes) {
    const max = opts.maxPartRows ?? rows;
    sizes = [];
    for (let r = 0; r < rows; r += max) sizes.push(Math.min(max, rows - r));
  }
  if (sizes.reduce((a, b) => a + b, 0) !== rows) throw new Error(`matrix ${name}: part rows ${sizes} do not sum to ${rows}`);
  return sizes;
}

/**
 * A GpuMatrix [rows, cols] of row-major float32 values quantized on the host (layoutQuantized, part by part, as the
 * loader quantizes them), with the values its kernels compute with (row-major), for the host reference.
 */
export function quantizedMatrix(device: GPUDevice, name: string, values: Float32Array, rows: number, cols: number,
  dtype: QuantDType, opts: MatrixOptions = {}): { W: GpuMatrix; values: Float32Array<ArrayBuffer> } {
  const out = new Float32Array(rows * cols);
  const parts: GpuMatrix["parts"] = [];
  let row0 = 0;
  for (const n of partSizes(name, values, rows, cols, opts)) {
    const part = layoutQuantized(values.subarray(row0 * cols, (row0 + n) * cols), n, cols, dtype);
    if (!part.ok) throw new Error(`quantizedMatrix ${name}: rows ${row0}..${row0 + n - 1} hold values that cannot be quantized`);
    out.set(part.values, row0 * cols);
    parts.push({ buffer: upload(device, part.bytes, `${name}[${row0}:${row0 + n}]`), row0, rows: n });
    row0 += n;
  }
  return { W: { name, dtype, rows, cols, parts }, values: out };
}
