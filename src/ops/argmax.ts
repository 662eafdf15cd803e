// Greedy choice on the GPU: the index of the largest logit of each output row.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const ARGMAX = defineKernel({
  name: "argmax",
  shader: "argmax",
  workgroupSize: 256,
  flags: ["PARTIALS"],
  bindings: { logits: "read", out: "read_write" },
  uniforms: { n: "u32" },
});

/** The same reduction over the (largest logit, index) pairs of the LM head with the fused argmax (src/ops/lm-head.ts). */
export const ARGMAX_PARTIALS = defineKernel({ ...ARGMAX, name: "argmax.partials", defines: ["PARTIALS"] });

/** Written by the kernel for a row with no finite logit (all NaN or -inf). */
export const NO_FINITE_LOGIT = 0xffffffff;

export class Argmax extends SingleKernelOp<typeof ARGMAX> {
  /** `n` logits per row (`partials`: n pairs of the fused LM head); out[r] for each of the step's output rows. */
  constructor(kernels: Kernels, logits: GPUBuffer, out: GPUBuffer, private readonly n: number, private readonly partials = false) {
    super(kernels, "argmax", "argmax", partials ? ARGMAX_PARTIALS : ARGMAX, { logits, out });
    this.call.uniforms.set({ n });
  }

  encode(rec: Recorder, step: Step): void {
    rec.dispatch(this.pipeline, this.call, step.outputs);
  }

  cost(step: Step): Cost {
    return { flops: step.outputs * this.n, bytes: step.outputs * this.n * (this.partials ? 8 : 4) };
  }
}
