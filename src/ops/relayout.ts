// Load-time kernel: one part of a weight matrix moved from the file's row-major order into the blocked layout of
// src/gpu/layout.ts on the GPU, so that the host never reorders weights.
import { defineKernel, KernelCall, type Kernels } from "../gpu/kernel.ts";
import type { GpuMatrix, MatrixPart } from "../gpu/matrix.ts";
import { grid, type Recorder } from "../gpu/recorder.ts";

export const RELAYOUT = defineKernel({
  name: "relayout",
  shader: "relayout",
  workgroupSize: 64,
  /** 32-bit words per element pair: 1 for 16-bit dtypes, 2 for F32. */
  overrides: { PAIR_WORDS: "u32" },
  bindings: { src: "read", dst: "read_write" },
  uniforms: { rows: "u32", hk: "u32", nq: "u32", words: "u32" },
});

/** Records the relayout of `rowMajor` (part's rows, row-major) into the part's buffer; returns the call to free after submission. */
export async function relayout(kernels: Kernels, rec: Recorder, m: GpuMatrix, part: MatrixPart, rowMajor: GPUBuffer): Promise<KernelCall> {
  const hk = m.cols / 2;
  const words = part.buffer.size / 4;
  const call = new KernelCall(kernels, RELAYOUT, { src: rowMajor, dst: part.buffer }, `relayout ${m.name}`);
  call.uniforms.set({ rows: part.rows, hk, nq: Math.ceil(hk / 4), words });
  const pipeline = call.pipeline(RELAYOUT, { overrides: { PAIR_WORDS: m.dtype === "F32" ? 2 : 1 } });
  await pipeline.ready;
  rec.dispatch(pipeline, call, ...grid(Math.ceil(words / RELAYOUT.workgroupSize)));
  return call;
}
