// Load-time kernel: a stored weight vector (norm weight or bias, any stored dtype) widened to f32 once, so that the
// per-token kernels read plain f32 vectors.
import { defineKernel, KernelCall, type Kernels, type WeightDType } from "../gpu/kernel.ts";
import { grid, type Recorder } from "../gpu/recorder.ts";

export const WIDEN = defineKernel({
  name: "widen",
  shader: "widen",
  weights: true,
  workgroupSize: 64,
  bindings: { w: "read", out: "read_write" },
  uniforms: { pairs: "u32" },
});

/** Records the widening of `pairs` element pairs of `raw` (stored as dtype) into `out`; returns the call to free after submission. */
export async function widen(kernels: Kernels, rec: Recorder, name: string, dtype: WeightDType, raw: GPUBuffer, out: GPUBuffer, pairs: number): Promise<KernelCall> {
  const call = new KernelCall(kernels, WIDEN, { w: raw, out }, `widen ${name}`);
  call.uniforms.set({ pairs });
  const pipeline = call.pipeline(WIDEN, { dtype });
  await pipeline.ready;
  rec.dispatch(pipeline, call, ...grid(Math.ceil(pairs / WIDEN.workgroupSize)));
  return call;
}
