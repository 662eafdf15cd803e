// The rows that need logits (each sequence's last token of the step), gathered into a compact activation for the
// LM head.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const GATHER_ROWS = defineKernel({
  name: "gather_rows",
  shader: "gather_rows",
  workgroupSize: 64,
  bindings: { x: "read", rows: "read", out: "read_write" },
  uniforms: { H: "u32" },
});

export class GatherRows extends SingleKernelOp<typeof GATHER_ROWS> {
  /** `rows` holds one row index of `x` per step output. */
  constructor(kernels: Kernels, x: GPUBuffer, rows: GPUBuffer, out: GPUBuffer, private readonly H: number) {
    super(kernels, "gather output rows", "gather", GATHER_ROWS, { x, rows, out });
    this.call.uniforms.set({ H });
  }

  encode(rec: Recorder, step: Step): void {
    rec.dispatch(this.pipeline, this.call, Math.ceil(this.H / GATHER_ROWS.workgroupSize), step.outputs);
  }

  cost(step: Step): Cost {
    return { flops: 0, bytes: 2 * step.outputs * this.H * 4 };
  }
}
