// Embedding lookup: x[t, :] = table[ids[t], :]. A table split across buffers gets one dispatch per part, each
// writing the rows of the ids it holds.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import { elementBytes, type GpuMatrix } from "../gpu/matrix.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { check, Op, type Cost, type Step } from "./op.ts";

export const EMBEDDING = defineKernel({
  name: "embedding",
  shader: "embedding",
  weights: true,
  workgroupSize: 64,
  bindings: { ids: "read", w: "read", x: "read_write" },
  uniforms: { T: "u32", half_h: "u32", row0: "u32", rows: "u32" },
});

export class Embedding extends Op {
  private readonly parts;
  private readonly pipeline;

  constructor(kernels: Kernels, ids: GPUBuffer, private readonly table: GpuMatrix, x: GPUBuffer) {
    check(table.cols % 2 === 0, `${table.name}: hidden size ${table.cols} must be even`);
    super(kernels, `embedding ${table.name}`, "embedding");
    this.parts = table.parts.map((part, i) => ({ part, call: this.bind(EMBEDDING, { ids, w: part.buffer, x }, `${this.label}#${i}`) }));
    this.pipeline = this.parts[0].call.pipeline(EMBEDDING, { dtype: table.dtype });
  }

  encode(rec: Recorder, step: Step): void {
    const halfH = this.table.cols / 2;
    for (const { part, call } of this.parts) {
      call.uniforms.set({ T: step.T, half_h: halfH, row0: part.row0, rows: part.rows });
      rec.dispatch(this.pipeline, call, Math.ceil(halfH / EMBEDDING.workgroupSize), step.T);
    }
  }

  cost(step: Step): Cost {
    return { flops: 0, bytes: step.T * this.table.cols * (elementBytes(this.table.dtype) + 4) };
  }
}
