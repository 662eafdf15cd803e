// Where a model's weights come from. Both sources produce the same GPU layout: matrices in their stored dtype and
// the blocked layout of src/gpu/layout.ts, or quantized on the GPU into Q8 or Q4 where asked, split by rows into
// parts that each fit one storage binding, and vectors (norm weights, biases) as f32. Every buffer they make belongs
// to the BufferSet they are given.
//   SafetensorsWeights: streams tensors from safetensors files in bounded chunks.
//   RandomWeights: generates seeded BF16 weights on the GPU, for benchmarks at real shapes.
import type { BufferSet } from "../gpu/buffers.ts";
import type { GpuDType, KernelCall, Kernels, QuantDType, WeightDType } from "../gpu/kernel.ts";
import { DTYPE_BYTES, isQuantized, planParts, type GpuMatrix, type MatrixPart } from "../gpu/matrix.ts";
import { Recorder } from "../gpu/recorder.ts";
import { quantize } from "../ops/quantize.ts";
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

/** One tensor of a stack: its rows (a matrix) or elements (a vector), in stacking order. */
export interface StackPart {
  name: string;
  size: number;
}

export interface WeightSource {
  /**
   * Tensors [size_i, cols] stacked by rows into one matrix (q, k and v projections as one, say), named `label`;
   * one part is the tensor itself. `quant`: quantized to that dtype on the GPU, else kept in the stored dtype.
   */
  matrix(label: string, parts: StackPart[], cols: number, quant?: QuantDType): Promise<GpuMatrix>;
  /** Vectors joined end to end into one f32 vector. */
  vector(label: string, parts: StackPart[]): Promise<GPUBuffer>;
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
  /** Raised by the quantize kernel to the number of a matrix it could not quantize (quantized[n - 1]). */
  private status: GPUBuffer | undefined;
  private quantized: string[] = [];

  constructor(protected kernels: Kernels, protected buffers: BufferSet, protected maxBindingBytes: number) {}

  protected get recorder(): Recorder {
    return (this.rec ??= new Recorder(this.kernels.device));
  }

  /** A matrix's parts, allocated (see planParts) in the weight layout, from a file's `from` (staged row-major). */
  protected allocateMatrix(name: string, dtype: GpuDType, rows: number, cols: number, from: WeightDType): GpuMatrix {
    const parts = planParts(name, rows, cols, dtype, this.maxBindingBytes, from).map(({ row0, rows: n, bytes }) => (
      { buffer: this.buffers.storage(`${name}[${row0}:${row0 + n}]`, bytes), row0, rows: n }));
    return { name, dtype, rows, cols, parts };
  }

  /** A temporary row-major buffer for one part in the stored dtype, moved into its laid-out buffer (and freed) by relayoutPart(). */
  protected staging(m: GpuMatrix, part: MatrixPart, from: WeightDType): GPUBuffer {
    return this.buffers.storage(`${m.name} (row-major)`, part.rows * m.cols * DTYPE_BYTES[from]);
  }

  /** Moves a part's row-major values (stored as `from`) into its buffer: relaid out, or quantized. */
  protected async relayoutPart(m: GpuMatrix, part: MatrixPart, rowMajor: GPUBuffer, from: WeightDType): Promise<void> {
    let work: Promise<KernelCall>;
    if (isQuantized(m.dtype)) {
      if (this.quantized.at(-1) !== m.name) this.quantized.push(m.name);
      this.status ??= this.buffers.storage("quantize status", 4);
      work = quantize(this.kernels, this.recorder, { ...m, dtype: m.dtype }, part, rowMajor, from, this.status, this.quantized.length);
    } else {
      work = relayout(this.kernels, this.recorder, m, part, rowMajor);
    }
    // Freed with the drain after the kernel is submitted, not before (a drain can come between the writes).
    await this.queued(work, part.buffer.size, rowMajor);
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

  /** Drains the queued work; throws naming a matrix that could not be quantized (the last in load order). */
  async finish(): Promise<void> {
    await this.drain();
    if (!this.status) return;
    const status = this.status;
    this.status = undefined;
    const readback = this.buffers.readback("quantize status readback", 4);
    const enc = this.kernels.device.createCommandEncoder();
    enc.copyBufferToBuffer(status, 0, readback, 0, 4);
    this.kernels.device.queue.submit([enc.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const failed = new Uint32Array(readback.getMappedRange().slice(0))[0];
    readback.unmap();
    this.buffers.release(readback);
    this.buffers.release(status);
    if (failed > 0) {
      throw new Error(`${this.quantized[failed - 1]}: holds NaN, infinity or weights too large for an f16 scale ` +
        `(over 8.3e6 for q8, 5.2e5 for q4), so it cannot be quantized; load it unquantized`);
    }
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

  /** The tensors of a stack, checked against their shapes and for one dtype; each with its byte offset in the stack. */
  private stacked(label: string, parts: StackPart[], shape: (size: number) => number[]) {
    let at = 0;
    const tensors = parts.map((p) => {
      const t = this.tensor(p.name);
      const dtype = this.check(t, shape(p.size));
      const base = at;
      at += t.byteLength;
      return { t, dtype, base };
    });
    const dtype = tensors[0].dtype;
    const other = tensors.find((x) => x.dtype !== dtype);
    if (other) {
      throw new Error(`${other.t.source.name}: tensor "${other.t.name}" is ${other.dtype} but "${tensors[0].t.name}" is ${dtype}: ` +
        `${label} stacks them in one buffer, which needs one dtype`);
    }
    return { tensors, dtype, bytes: at };
  }

  async matrix(label: string, parts: StackPart[], cols: number, quant?: QuantDType): Promise<GpuMatrix> {
    const { tensors, dtype } = this.stacked(label, parts, (rows) => [rows, cols]);
    const m = this.allocateMatrix(label, quant ?? dtype, parts.reduce((n, p) => n + p.size, 0), cols, dtype);
    const rowBytes = cols * DTYPE_BYTES[dtype];
    // Parts fill in stacking order, so each part is relaid out as soon as its last byte has arrived.
    let part = 0;
    let rowMajor = this.staging(m, m.parts[0], dtype);
    for (const { t, base } of tensors) {
      await streamTensor(t, async (bytes, offset) => {
        const at = base + offset;
        for (let done = 0; done < bytes.byteLength;) {
          const { row0, rows: n } = m.parts[part];
          const within = at + done - row0 * rowBytes;
          const take = Math.min(bytes.byteLength - done, n * rowBytes - within);
          await this.write(rowMajor, within, bytes.subarray(done, done + take), t.name);
          done += take;
          if (within + take === n * rowBytes) {
            await this.relayoutPart(m, m.parts[part], rowMajor, dtype);
            if (++part < m.parts.length) rowMajor = this.staging(m, m.parts[part], dtype);
          }
        }
      });
    }
    return m;
  }

  async vector(label: string, parts: StackPart[]): Promise<GPUBuffer> {
    const { tensors, dtype, bytes } = this.stacked(label, parts, (length) => [length]);
    const length = parts.reduce((n, p) => n + p.size, 0);
    const out = this.buffers.storage(label, length * 4);
    if (dtype === "F32") {
      for (const { t, base } of tensors) await streamTensor(t, (b, at) => this.write(out, base + at, b, t.name));
      return out;
    }
    // Uploaded in whole 32-bit words and widened in pairs of elements.
    const odd = tensors.find(({ t }) => t.shape[0] % 2 !== 0);
    if (odd) throw new Error(`${odd.t.source.name}: tensor "${odd.t.name}": odd length ${odd.t.shape[0]} is not supported for ${dtype}`);
    const raw = this.buffers.storage(`${label} (raw)`, bytes);
    for (const { t, base } of tensors) await streamTensor(t, (b, at) => this.write(raw, base + at, b, t.name));
    await this.queued(widen(this.kernels, this.recorder, label, dtype, raw, out, length / 2), length * 4, raw);
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

  async matrix(label: string, parts: StackPart[], cols: number, quant?: QuantDType): Promise<GpuMatrix> {
    const m = this.allocateMatrix(label, quant ?? "BF16", parts.reduce((n, p) => n + p.size, 0), cols, "BF16");
    const range = randomMatrixRange(cols);
    for (const part of m.parts) {
      const rowMajor = this.staging(m, part, "BF16");
      // Each tensor's rows in this part get that tensor's own values, as if it were alone.
      let tensorRow0 = 0;
      for (const t of parts) {
        const from = Math.max(part.row0, tensorRow0), to = Math.min(part.row0 + part.rows, tensorRow0 + t.size);
        if (from < to) {
          const words = ((to - from) * cols) / 2;
          const fill = { words, offset: ((from - tensorRow0) * cols) / 2, dst: ((from - part.row0) * cols) / 2, seed: nameSeed(t.name, this.seed), ...range, f32: false };
          await this.queued(randomFill(this.kernels, this.recorder, t.name, rowMajor, fill), words * 4);
        }
        tensorRow0 += t.size;
      }
      await this.relayoutPart(m, part, rowMajor, "BF16");
    }
    return m;
  }

  async vector(label: string, parts: StackPart[]): Promise<GPUBuffer> {
    const out = this.buffers.storage(label, parts.reduce((n, p) => n + p.size, 0) * 4);
    let dst = 0;
    for (const t of parts) {
      const fill = { words: t.size, offset: 0, dst, seed: nameSeed(t.name, this.seed), ...randomVectorRange(t.name), f32: true };
      await this.queued(randomFill(this.kernels, this.recorder, t.name, out, fill), t.size * 4);
      dst += t.size;
    }
    return out;
  }
}
