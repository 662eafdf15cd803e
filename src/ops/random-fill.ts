// Load-time kernel: seeded random weights generated where they live (benchmarks at real model shapes without a
// file or a host copy); src/model/random-host.ts computes the same values on the host.
import { defineKernel, KernelCall, type Kernels } from "../gpu/kernel.ts";
import { grid, type Recorder } from "../gpu/recorder.ts";

export const RANDOM_FILL = defineKernel({
  name: "random",
  shader: "random",
  workgroupSize: 64,
  /** true: f32 values; false: packed bf16 pairs (a BF16 matrix's row-major words). */
  overrides: { F32: "bool" },
  bindings: { out: "read_write" },
  uniforms: { words: "u32", offset: "u32", seed: "u32", scale: "f32", center: "f32", dst: "u32" },
});

export interface RandomFill {
  words: number;
  /** Index of the first word in the whole tensor (a part of a split matrix continues its sequence). */
  offset: number;
  /** Word of `out` the fill starts at (a tensor stacked after others in one buffer). Default 0. */
  dst?: number;
  seed: number;
  scale: number;
  center: number;
  f32: boolean;
}

/** Records the fill of `out`; returns the call to free after submission. */
export async function randomFill(kernels: Kernels, rec: Recorder, name: string, out: GPUBuffer, f: RandomFill): Promise<KernelCall> {
  const call = new KernelCall(kernels, RANDOM_FILL, { out }, `random ${name}`);
  call.uniforms.set({ words: f.words, offset: f.offset, seed: f.seed, scale: f.scale, center: f.center, dst: f.dst ?? 0 });
  const pipeline = call.pipeline(RANDOM_FILL, { overrides: { F32: f.f32 } });
  await pipeline.ready;
  rec.dispatch(pipeline, call, ...grid(Math.ceil(f.words / RANDOM_FILL.workgroupSize)));
  return call;
}
