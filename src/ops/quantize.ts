// Load-time kernel: one part of a weight matrix quantized on the GPU from the file's row-major order into the Q8 or
// Q4 layout (QUANT_LAYOUT in src/gpu/layout.ts), as relayout does for unquantized weights: the host never holds
// the model. src/model/quant.ts has the same steps on the host.
import { defineKernel, KernelCall, type Kernels, type QuantDType, type WeightDType } from "../gpu/kernel.ts";
import { QUANT_LAYOUT, WEIGHT_LAYOUT } from "../gpu/layout.ts";
import type { GpuMatrix, MatrixPart } from "../gpu/matrix.ts";
import { grid, type Recorder } from "../gpu/recorder.ts";

export const QUANTIZE = defineKernel({
  name: "quantize",
  shader: "quantize",
  workgroupSize: 64,
  /** SRC: the row-major source's dtype (0 BF16, 1 F16, 2 F32); Q4: int4, else int8. */
  overrides: { SRC: "u32", Q4: "bool" },
  bindings: { src: "read", dst: "read_write", status: "read_write" },
  uniforms: { rows: "u32", K: "u32", nq: "u32", tiles: "u32", id: "u32" },
});

const SOURCE: Record<WeightDType, number> = { BF16: 0, F16: 1, F32: 2 };

/**
 * Records the quantization of `rowMajor` (the part's rows, row-major in `from`) into the part's buffer; a group
 * that cannot be quantized raises `status` to `id` (> 0). Returns the call to free after submission.
 */
export async function quantize(kernels: Kernels, rec: Recorder, m: GpuMatrix & { dtype: QuantDType }, part: MatrixPart,
  rowMajor: GPUBuffer, from: WeightDType, status: GPUBuffer, id: number): Promise<KernelCall> {
  const tiles = part.buffer.size / QUANT_LAYOUT.tileBytes[m.dtype];
  const call = new KernelCall(kernels, QUANTIZE, { src: rowMajor, dst: part.buffer, status }, `quantize ${m.name}`);
  call.uniforms.set({ rows: part.rows, K: m.cols, nq: Math.ceil(m.cols / WEIGHT_LAYOUT.quadElements), tiles, id });
  const pipeline = call.pipeline(QUANTIZE, { overrides: { SRC: SOURCE[from], Q4: m.dtype === "Q4" } });
  await pipeline.ready;
  rec.dispatch(pipeline, call, ...grid(Math.ceil((tiles * WEIGHT_LAYOUT.block) / 2 / QUANTIZE.workgroupSize)));
  return call;
}
