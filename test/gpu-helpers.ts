// Small helpers for tests that run kernels on a real WebGPU device (Dawn; lavapipe on a CPU-only machine): one
// shared device and kernel registry per test file; the float64 references (src/check/reference.ts) and the device
// data they are checked on (src/check/device-data.ts), re-exported for the test files.
import { BufferSet } from "../src/gpu/buffers.ts";
import { Kernels, type WeightDType } from "../src/gpu/kernel.ts";
import { DTYPE_BYTES, type GpuMatrix } from "../src/gpu/matrix.ts";
import { nodeGpu, type NodeGpu } from "../src/gpu/node.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { readF32, uploadF32 } from "../src/check/device-data.ts";
import { Linear, sequenceStep, type LinearVariant } from "../src/ops/index.ts";
import type { TensorInfo } from "../src/model/safetensors.ts";
import { SafetensorsWeights } from "../src/model/weights.ts";
import { mulberry32 } from "../src/util/prng.ts";

export * from "../src/check/reference.ts";
export * from "../src/check/device-data.ts";
export { mulberry32, DTYPE_BYTES };

let shared: Promise<NodeGpu> | undefined;
let sharedKernels: Kernels | undefined;

/** The device shared by every test in this process (created on first use). */
export function testGpu(): Promise<NodeGpu> {
  shared ??= nodeGpu().then((gpu) => {
    gpu.device.addEventListener?.("uncapturederror", (e) => {
      console.error("GPU error:", (e as GPUUncapturedErrorEvent).error.message);
    });
    return gpu;
  });
  return shared;
}

/** A kernel registry on the shared device, so compiled pipelines are reused across tests. */
export async function testKernels(): Promise<Kernels> {
  const { device } = await testGpu();
  sharedKernels ??= new Kernels(device);
  return sharedKernels;
}

/** A TensorInfo over bytes in memory, as openSafetensors would describe them. */
export function memoryTensor(name: string, dtype: WeightDType, shape: number[], bytes: Uint8Array): TensorInfo {
  return {
    name, dtype, shape, offset: 0, byteLength: bytes.byteLength,
    source: {
      name: "memory", size: bytes.byteLength,
      read: async (offset, length) => bytes.slice(offset, offset + length),
      close: async () => {},
    },
  };
}

/** A weight source over in-memory tensors, as the model loader builds one over safetensors files. */
export function memoryWeights(kernels: Kernels, maxBindingBytes: number, ...tensors: TensorInfo[]): SafetensorsWeights {
  return new SafetensorsWeights(kernels, new BufferSet(kernels.device), maxBindingBytes, new Map(tensors.map((t) => [t.name, t])), "memory",
    tensors.map((t) => t.name));
}

/** Runs a linear layer with `variant` in both slots over M rows of x, y starting as y0; returns y as read back. */
export async function runLinear(kernels: Kernels, x: GPUBuffer, W: GpuMatrix, y0: Float32Array, variant: LinearVariant, M: number,
  opts: { bias?: GPUBuffer; accumulate?: boolean }): Promise<Float32Array> {
  const { device } = kernels;
  const y = uploadF32(device, y0, "y");
  const op = new Linear(kernels, x, W, y, { variants: { decode: variant, prefill: variant }, ...opts });
  try {
    await kernels.compiled();
    const rec = new Recorder(device);
    op.encode(rec, sequenceStep(M, 0));
    rec.submit();
    return await readF32(device, y, y0.length);
  } finally {
    op.destroy();
    y.destroy();
  }
}
