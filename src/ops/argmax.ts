// Greedy choice on the GPU: the index of the largest logit of each output row.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const ARGMAX = defineKernel({
  name: "argmax",
  shader: "argmax",
  workgroupSize: 256,
  bindings: { logits: "read", out: "read_write" },
  uniforms: { n: "u32" },
});

/** Written by the kernel for a row with no finite logit (all NaN or -inf). */
export const NO_FINITE_LOGIT = 0xffffffff;

export class Argmax extends SingleKernelOp<typeof ARGMAX> {
  /** `n` logits per row; out[r] for each of the step's output rows. */
  constructor(kernels: Kernels, logits: GPUBuffer, out: GPUBuffer, private readonly n: number) {
    super(kernels, "argmax", "argmax", ARGMAX, { logits, out });
    this.call.uniforms.set({ n });
  }

  encode(rec: Recorder, step: Step): void {
    rec.dispatch(this.pipeline, this.call, step.outputs);
  }

  cost(step: Step): Cost {
    return { flops: step.outputs * this.n, bytes: step.outputs * this.n * 4 };
  }
}
