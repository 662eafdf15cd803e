// Where a model's weights come from. Both sources produce the same GPU layout: matrices in their stored dtype and
// the blocked layout of src/gpu/layout.ts, split by rows into parts that each fit one storage binding, and
// vectors (norm weights, biases) as f32. Every buffer they make belongs to the BufferSet they are given.
//   SafetensorsWeights: streams tensors from safetensors files in bounded chunks.
//   RandomWeights: generates seeded BF16 weights on the GPU, for benchmarks at real shapes.
import type { BufferSet } from "../gpu/buffers.ts";
import type { KernelCall, Kernels, WeightDType } from "../gpu/kernel.ts";
import { DTYPE_BYTES, planParts, type GpuMatrix, type MatrixPart } from "../gpu/matrix.ts";
import { Recorder } from "../gpu/recorder.ts";
import { randomFill } from "../ops/random-fill.ts";
import { relayout } from "../ops/relayout.ts";
import { widen } from "../ops/widen.ts";
import { streamTensor, type TensorInfo } from "./safetensors.ts";

const WEIGHT_DTYPES: WeightDType[] = ["BF16", "F16", "F32"];
// Queued uploads are drained this often, so staging memory stays bounded whatever the model size.
const DRAIN_BYTES = 64 * 1024 * 1024;

export interface UploadProgress {
  bytes: number;
  totalBytes: number;
  tensor: string;
}

export interface WeightSource {
  matrix(name: string, rows: number, cols: number): Promise<GpuMatrix>;
  vector(name: string, length: number): Promise<GPUBuffer>;
  /** Waits until every upload or generation has reached the GPU. */
  finish(): Promise<void>;
  /** Bytes read from files (0 for generated weights). */
  readonly fileBytes: number;
  /** Frees the load-time kernels of work still queued (after a failed load; the BufferSet frees the rest). */
  abandon(): void;
}

/** Shared by both sources: buffer allocation, the row split, and batched GPU work with bounded staging. */
abstract class GpuWeights {
  fileBytes = 0;
  private pendingBytes = 0;
  private rec: Recorder | undefined;
  /** Load-time kernel calls and staging buffers of the work queued since the last drain. */
  private calls: KernelCall[] = [];
  private temps: GPUBuffer[] = [];

  constructor(protected kernels: Kernels, protected buffers: BufferSet, protected maxBindingBytes: number) {}

  protected get recorder(): Recorder {
    return (this.rec ??= new Recorder(this.kernels.device));
  }

  /** A matrix's parts, allocated (see planParts) in the weight layout. */
  protected allocateMatrix(name: string, dtype: WeightDType, rows: number, cols: number): GpuMatrix {
    const parts = planParts(name, rows, cols, dtype, this.maxBindingBytes).map(({ row0, rows: n, bytes }) => (
      { buffer: this.buffers.storage(`${name}[${row0}:${row0 + n}]`, bytes), row0, rows: n }));
    return { name, dtype, rows, cols, parts };
  }

  /** A temporary row-major buffer for one part, moved into its laid-out buffer (and freed) by relayoutPart(). */
  protected staging(m: GpuMatrix, part: MatrixPart): GPUBuffer {
    return this.buffers.storage(`${m.name} (row-major)`, part.rows * m.cols * DTYPE_BYTES[m.dtype]);
  }

  protected async relayoutPart(m: GpuMatrix, part: MatrixPart, rowMajor: GPUBuffer): Promise<void> {
    // Freed with the drain after the relayout is submitted, not before (a drain can come between the writes).
    await this.queued(relayout(this.kernels, this.recorder, m, part, rowMajor), part.buffer.size, rowMajor);
  }

  protected async queued(call: Promise<KernelCall>, bytes: number, temp?: GPUBuffer): Promise<void> {
    this.calls.push(await call);
    if (temp) this.temps.push(temp);
    await this.account(bytes);
  }

  protected async account(bytes: number): Promise<void> {
    this.pendingBytes += bytes;
    if (this.pendingBytes >= DRAIN_BYTES) await this.drain();
  }

  private async drain(): Promise<void> {
    this.rec?.submit();
    this.rec = undefined;
    await this.kernels.device.queue.onSubmittedWorkDone();
    for (const c of this.calls) c.destroy();
    for (const b of this.temps) this.buffers.release(b);
    this.calls = [];
    this.temps = [];
    this.pendingBytes = 0;
  }

  async finish(): Promise<void> {
    await this.drain();
  }

  abandon(): void {
    for (const c of this.calls) c.destroy();
    this.calls = [];
    this.rec = undefined;
  }
}

export class SafetensorsWeights extends GpuWeights implements WeightSource {
  private uploaded = 0;
  readonly totalBytes: number;

  constructor(kernels: Kernels, buffers: BufferSet, maxBindingBytes: number, private tensors: Map<string, TensorInfo>,
    private where: string, names: string[], private onProgress?: (p: UploadProgress) => void) {
    super(kernels, buffers, maxBindingBytes);
    this.totalBytes = names.reduce((sum, n) => sum + this.tensor(n).byteLength, 0);
  }

  tensor(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.where}: tensor "${name}" is missing from the safetensors files`);
    return t;
  }

  private check(t: TensorInfo, shape: number[]): WeightDType {
    if (!(WEIGHT_DTYPES as string[]).includes(t.dtype)) {
      throw new Error(`${t.source.name}: tensor "${t.name}" has dtype ${t.dtype}; weights must be ${WEIGHT_DTYPES.join(", ")}`);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${t.source.name}: tensor "${t.name}" has shape [${t.shape}], but config.json implies [${shape}]`);
    }
    return t.dtype as WeightDType;
  }

  private async write(buffer: GPUBuffer, offset: number, bytes: Uint8Array<ArrayBuffer>, tensor: string): Promise<void> {
    this.kernels.device.queue.writeBuffer(buffer, offset, bytes);
    this.uploaded += bytes.byteLength;
    this.fileBytes += bytes.byteLength;
    this.onProgress?.({ bytes: this.uploaded, totalBytes: this.totalBytes, tensor });
    await this.account(bytes.byteLength);
  }

  async matrix(name: string, rows: number, cols: number): Promise<GpuMatrix> {
    const t = this.tensor(name);
    const m = this.allocateMatrix(name, this.check(t, [rows, cols]), rows, cols);
    const rowBytes = cols * DTYPE_BYTES[m.dtype];
    // Parts fill in file order, so each part is relaid out as soon as its last byte has arrived.
    let part = 0;
    let rowMajor = this.staging(m, m.parts[0]);
    await streamTensor(t, async (bytes, at) => {
      for (let done = 0; done < bytes.byteLength;) {
        const { row0, rows: n } = m.parts[part];
        const within = at + done - row0 * rowBytes;
        const take = Math.min(bytes.byteLength - done, n * rowBytes - within);
        await this.write(rowMajor, within, bytes.subarray(done, done + take), name);
        done += take;
        if (within + take === n * rowBytes) {
          await this.relayoutPart(m, m.parts[part], rowMajor);
          if (++part < m.parts.length) rowMajor = this.staging(m, m.parts[part]);
        }
      }
    });
    return m;
  }

  async vector(name: string, length: number): Promise<GPUBuffer> {
    const t = this.tensor(name);
    const dtype = this.check(t, [length]);
    const out = this.buffers.storage(name, length * 4);
    if (dtype === "F32") {
      await streamTensor(t, (bytes, at) => this.write(out, at, bytes, name));
      return out;
    }
    if (length % 2 !== 0) throw new Error(`${t.source.name}: tensor "${name}": odd length ${length} is not supported for ${dtype}`);
    const raw = this.buffers.storage(`${name} (raw)`, t.byteLength);
    await streamTensor(t, (bytes, at) => this.write(raw, at, bytes, name));
    await this.queued(widen(this.kernels, this.recorder, name, dtype, raw, out, length / 2), length * 4, raw);
    return out;
  }
}

/** FNV-1a of the tensor name, so each tensor gets its own stream of values from one model seed. */
export function nameSeed(name: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Generated values are uniform in [center - scale, center + scale]; scale is rounded to f32 as the shader sees it. */
export interface RandomRange {
  scale: number;
  center: number;
}

/** Uniform with the standard deviation of HF's default init for a layer of this fan-in (1/sqrt(cols)). */
export function randomMatrixRange(cols: number): RandomRange {
  return { scale: Math.fround(Math.sqrt(3 / cols)), center: 0 };
}

/** Norm weights near 1 and small biases, like a trained model's. */
export function randomVectorRange(name: string): RandomRange {
  return name.endsWith("norm.weight") ? { scale: Math.fround(0.1), center: 1 } : { scale: Math.fround(0.05), center: 0 };
}

export class RandomWeights extends GpuWeights implements WeightSource {
  constructor(kernels: Kernels, buffers: BufferSet, maxBindingBytes: number, private seed: number) {
    super(kernels, buffers, maxBindingBytes);
  }

  async matrix(name: string, rows: number, cols: number): Promise<GpuMatrix> {
    const m = this.allocateMatrix(name, "BF16", rows, cols);
    const range = randomMatrixRange(cols);
    for (const part of m.parts) {
      const rowMajor = this.staging(m, part);
      const words = (part.rows * cols) / 2;
      const fill = { words, offset: (part.row0 * cols) / 2, seed: nameSeed(name, this.seed), ...range, f32: false };
      await this.queued(randomFill(this.kernels, this.recorder, name, rowMajor, fill), words * 4);
      await this.relayoutPart(m, part, rowMajor);
    }
    return m;
  }

  async vector(name: string, length: number): Promise<GPUBuffer> {
    const out = this.buffers.storage(name, length * 4);
    const fill = { words: length, offset: 0, seed: nameSeed(name, this.seed), ...randomVectorRange(name), f32: true };
    await this.queued(randomFill(this.kernels, this.recorder, name, out, fill), length * 4);
    return out;
  }
}
