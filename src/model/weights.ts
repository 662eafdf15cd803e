// Where a model's weights come from. Both sources produce the same GPU layout: matrices in their
// stored dtype, split by rows into parts that each fit one storage binding (the kernels cover a split
// matrix with one dispatch per part), and vectors (norm weights, biases) as f32.
//   SafetensorsWeights: streams tensors from safetensors files in bounded chunks.
//   RandomWeights: generates seeded BF16 weights on the GPU, for benchmarks at real shapes.
import { grid, Kernels, Params, Recorder, type WeightDType } from "../gpu/kernels.ts";
import type { GpuMatrix } from "../gpu/ops.ts";
import { DTYPE_BYTES, streamTensor, type TensorInfo } from "./safetensors.ts";

const WEIGHT_DTYPES: WeightDType[] = ["BF16", "F16", "F32"];
// Queued uploads are drained this often, so staging memory stays bounded whatever the model size.
const DRAIN_BYTES = 64 * 1024 * 1024;
// Rows per block of the weight layout (W_BLOCK in shaders/weight_layout.wgsl).
const ROW_BLOCK = 32;

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
  /** Bytes of GPU buffers created for weights. */
  readonly gpuBytes: number;
  /** Bytes read from files (0 for generated weights). */
  readonly fileBytes: number;
}

/** Shared by both sources: buffer allocation, the row split, and batched GPU work with bounded staging. */
abstract class GpuWeights {
  gpuBytes = 0;
  fileBytes = 0;
  private pendingBytes = 0;
  private rec: Recorder | undefined;
  private temps: GPUBuffer[] = [];

  constructor(protected kernels: Kernels, protected maxBindingBytes: number) {}

  protected get device(): GPUDevice {
    return this.kernels.device;
  }

  protected buffer(label: string, bytes: number): GPUBuffer {
    this.gpuBytes += bytes;
    return this.device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  }

  /**
   * Splits a [rows, cols] matrix into parts of whole 32-row blocks that each fit one binding, and creates
   * their buffers in the layout of shaders/weight_layout.wgsl (cols padded to 8, rows to 32).
   */
  protected allocateMatrix(name: string, dtype: WeightDType, rows: number, cols: number): GpuMatrix {
    const blockBytes = ROW_BLOCK * Math.ceil(cols / 8) * 8 * DTYPE_BYTES[dtype];
    const blocksPerPart = Math.floor(this.maxBindingBytes / blockBytes);
    if (blocksPerPart === 0) throw new Error(`tensor "${name}": a block of ${ROW_BLOCK} rows (${blockBytes} bytes) exceeds the storage binding limit ${this.maxBindingBytes}`);
    const rowsPerPart = blocksPerPart * ROW_BLOCK;
    const parts: GpuMatrix["parts"] = [];
    for (let row0 = 0; row0 < rows; row0 += rowsPerPart) {
      const n = Math.min(rowsPerPart, rows - row0);
      parts.push({ buffer: this.buffer(`${name}[${row0}:${row0 + n}]`, Math.ceil(n / ROW_BLOCK) * blockBytes), row0, rows: n });
    }
    return { name, dtype, rows, cols, parts };
  }

  /** A temporary row-major buffer for one part, moved into its laid-out buffer by relayout(). */
  protected staging(m: GpuMatrix, part: GpuMatrix["parts"][number]): GPUBuffer {
    const bytes = part.rows * m.cols * DTYPE_BYTES[m.dtype];
    return this.device.createBuffer({ label: `${m.name} (row-major)`, size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  }

  protected async relayout(m: GpuMatrix, part: GpuMatrix["parts"][number], rowMajor: GPUBuffer): Promise<void> {
    const hk = m.cols / 2;
    const words = part.buffer.size / 4;
    const params = new Params(this.device, 4, `relayout ${m.name}`);
    params.set(part.rows, hk, Math.ceil(hk / 4), words);
    const pipeline = await this.kernels.pipeline("relayout", { constants: { PAIR_WORDS: m.dtype === "F32" ? 2 : 1 } });
    await this.dispatch(pipeline, this.kernels.bindGroup("relayout", [params.buffer, rowMajor, part.buffer]), Math.ceil(words / 64), params, rowMajor);
  }

  /** Queues a dispatch; it is submitted with the next drain. */
  protected async dispatch(pipeline: GPUComputePipeline, bind: GPUBindGroup, groups: number, params: Params, temp?: GPUBuffer) {
    this.rec ??= new Recorder(this.device);
    this.rec.dispatch(pipeline, bind, ...grid(groups));
    this.temps.push(params.buffer, ...(temp ? [temp] : []));
    await this.account(groups * 256);
  }

  protected async account(bytes: number): Promise<void> {
    this.pendingBytes += bytes;
    if (this.pendingBytes >= DRAIN_BYTES) await this.drain();
  }

  private async drain(): Promise<void> {
    this.rec?.submit();
    this.rec = undefined;
    this.device.queue.submit([]);
    await this.device.queue.onSubmittedWorkDone();
    for (const b of this.temps) b.destroy();
    this.temps = [];
    this.pendingBytes = 0;
  }

  async finish(): Promise<void> {
    await this.drain();
  }
}

export class SafetensorsWeights extends GpuWeights implements WeightSource {
  private uploaded = 0;
  readonly totalBytes: number;

  constructor(kernels: Kernels, maxBindingBytes: number, private tensors: Map<string, TensorInfo>, private where: string,
    names: string[], private onProgress?: (p: UploadProgress) => void) {
    super(kernels, maxBindingBytes);
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
    this.device.queue.writeBuffer(buffer, offset, bytes);
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
          await this.relayout(m, m.parts[part], rowMajor);
          if (++part < m.parts.length) rowMajor = this.staging(m, m.parts[part]);
        }
      }
    });
    return m;
  }

  async vector(name: string, length: number): Promise<GPUBuffer> {
    const t = this.tensor(name);
    const dtype = this.check(t, [length]);
    const out = this.buffer(name, length * 4);
    if (dtype === "F32") {
      await streamTensor(t, (bytes, at) => this.write(out, at, bytes, name));
      return out;
    }
    if (length % 2 !== 0) throw new Error(`${t.source.name}: tensor "${name}": odd length ${length} is not supported for ${dtype}`);
    const raw = this.device.createBuffer({ label: `${name} (raw)`, size: Math.max(16, Math.ceil(t.byteLength / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    await streamTensor(t, (bytes, at) => this.write(raw, at, bytes, name));
    const pairs = length / 2;
    const params = new Params(this.device, 1, `widen ${name}`);
    params.set(pairs);
    const pipeline = await this.kernels.pipeline("widen", { dtype });
    await this.dispatch(pipeline, this.kernels.bindGroup("widen", [params.buffer, raw, out]), Math.ceil(pairs / 64), params, raw);
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
  constructor(kernels: Kernels, maxBindingBytes: number, private seed: number) {
    super(kernels, maxBindingBytes);
  }

  private async fill(name: string, buffer: GPUBuffer, words: number, offset: number, range: RandomRange, f32: boolean) {
    const params = new Params(this.device, 5, `random ${name}`);
    params.set(words, offset, nameSeed(name, this.seed), { f32: range.scale }, { f32: range.center });
    const pipeline = await this.kernels.pipeline("random", { constants: { F32: f32 ? 1 : 0 } });
    await this.dispatch(pipeline, this.kernels.bindGroup("random", [params.buffer, buffer]), Math.ceil(words / 64), params);
  }

  async matrix(name: string, rows: number, cols: number): Promise<GpuMatrix> {
    const m = this.allocateMatrix(name, "BF16", rows, cols);
    const range = randomMatrixRange(cols);
    for (const part of m.parts) {
      const rowMajor = this.staging(m, part);
      await this.fill(name, rowMajor, (part.rows * cols) / 2, (part.row0 * cols) / 2, range, false);
      await this.relayout(m, part, rowMajor);
    }
    return m;
  }

  async vector(name: string, length: number): Promise<GPUBuffer> {
    const out = this.buffer(name, length * 4);
    await this.fill(name, out, length, 0, randomVectorRange(name), true);
    return out;
  }
}
