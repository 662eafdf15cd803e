// Moving weights from safetensors files to GPU buffers in their stored dtype, in bounded chunks.
// A matrix larger than the device's largest storage binding is split by rows into parts; the
// kernels cover a split matrix with one dispatch per part.
import { grid, Kernels, Params, Recorder, type WeightDType } from "../gpu/kernels.ts";
import type { GpuMatrix } from "../gpu/ops.ts";
import { DTYPE_BYTES, streamTensor, type TensorInfo } from "./safetensors.ts";

const WEIGHT_DTYPES: WeightDType[] = ["BF16", "F16", "F32"];
// Queued uploads are drained this often, so staging memory stays bounded whatever the model size.
const DRAIN_BYTES = 64 * 1024 * 1024;

export interface UploadProgress {
  bytes: number;
  totalBytes: number;
  tensor: string;
}

export class WeightUploader {
  private pendingBytes = 0;
  private widenRec: Recorder | undefined;
  private temps: GPUBuffer[] = [];
  uploadedBytes = 0;
  gpuBytes = 0;

  constructor(private kernels: Kernels, private maxBindingBytes: number, private totalBytes: number,
    private onProgress?: (p: UploadProgress) => void) {}

  private get device(): GPUDevice {
    return this.kernels.device;
  }

  private checkTensor(t: TensorInfo, shape: number[]): WeightDType {
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
    this.pendingBytes += bytes.byteLength;
    this.uploadedBytes += bytes.byteLength;
    this.onProgress?.({ bytes: this.uploadedBytes, totalBytes: this.totalBytes, tensor });
    if (this.pendingBytes >= DRAIN_BYTES) await this.drain();
  }

  private async drain(): Promise<void> {
    this.widenRec?.submit();
    this.widenRec = undefined;
    this.device.queue.submit([]);
    await this.device.queue.onSubmittedWorkDone();
    for (const b of this.temps) b.destroy();
    this.temps = [];
    this.pendingBytes = 0;
  }

  private buffer(label: string, bytes: number, usage: number): GPUBuffer {
    this.gpuBytes += bytes;
    return this.device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 4) * 4), usage });
  }

  /** A [rows, cols] matrix, split by rows so that each part fits one storage binding. */
  async matrix(t: TensorInfo, rows: number, cols: number): Promise<GpuMatrix> {
    const dtype = this.checkTensor(t, [rows, cols]);
    const rowBytes = cols * DTYPE_BYTES[dtype];
    const rowsPerPart = Math.floor(this.maxBindingBytes / rowBytes);
    if (rowsPerPart === 0) throw new Error(`tensor "${t.name}": one row of ${rowBytes} bytes exceeds the device's storage binding limit`);
    const parts: GpuMatrix["parts"] = [];
    for (let row0 = 0; row0 < rows; row0 += rowsPerPart) {
      const n = Math.min(rowsPerPart, rows - row0);
      const buffer = this.buffer(`${t.name}[${row0}:${row0 + n}]`, n * rowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
      parts.push({ buffer, row0, rows: n });
    }
    const partBytes = rowsPerPart * rowBytes;
    await streamTensor(t, async (bytes, at) => {
      // A chunk can straddle part boundaries; hand each part its own slice.
      for (let done = 0; done < bytes.byteLength;) {
        const pos = at + done;
        const part = Math.floor(pos / partBytes);
        const within = pos - part * partBytes;
        const n = Math.min(bytes.byteLength - done, partBytes - within);
        await this.write(parts[part].buffer, within, bytes.subarray(done, done + n), t.name);
        done += n;
      }
    });
    return { name: t.name, dtype, rows, cols, parts };
  }

  /** A vector (norm weight or bias) as f32, widened on the GPU from its stored dtype. */
  async vector(t: TensorInfo, length: number): Promise<GPUBuffer> {
    const dtype = this.checkTensor(t, [length]);
    const out = this.buffer(t.name, length * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    if (dtype === "F32") {
      await streamTensor(t, (bytes, at) => this.write(out, at, bytes, t.name));
      return out;
    }
    if (length % 2 !== 0) throw new Error(`tensor "${t.name}": odd length ${length} is not supported for ${dtype}`);
    const raw = this.device.createBuffer({ label: `${t.name} (raw)`, size: Math.max(16, t.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    this.temps.push(raw);
    await streamTensor(t, (bytes, at) => this.write(raw, at, bytes, t.name));
    const pairs = length / 2;
    const params = new Params(this.device, 1, `widen ${t.name}`);
    params.set(pairs);
    this.widenRec ??= new Recorder(this.device);
    const pipeline = await this.kernels.pipeline("widen", { dtype });
    this.widenRec.dispatch(pipeline, this.kernels.bindGroup("widen", [params.buffer, raw, out]), ...grid(Math.ceil(pairs / 64)));
    this.temps.push(params.buffer);
    return out;
  }

  async finish(): Promise<void> {
    await this.drain();
  }
}
