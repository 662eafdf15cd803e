// The SwiGLU activation of the Qwen2 MLP: out = silu(gate) * up, over the stacked gate/up projection's output.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import { grid, type Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const SWIGLU = defineKernel({
  name: "swiglu",
  shader: "swiglu",
  workgroupSize: 64,
  bindings: { gate_up: "read", out: "read_write" },
  uniforms: { n: "u32", width: "u32" },
});

export class SwiGlu extends SingleKernelOp<typeof SWIGLU> {
  /** `width` outputs per row (the intermediate size); gate_up holds 2 width per row. */
  constructor(kernels: Kernels, gateUp: GPUBuffer, out: GPUBuffer, private readonly width: number) {
    super(kernels, "swiglu", "swiglu", SWIGLU, { gate_up: gateUp, out });
    this.call.uniforms.set({ width });
  }

  encode(rec: Recorder, step: Step): void {
    const n = step.T * this.width;
    this.call.uniforms.set({ n });
    rec.dispatch(this.pipeline, this.call, ...grid(Math.ceil(n / SWIGLU.workgroupSize)));
  }

  cost(step: Step): Cost {
    return { flops: 5 * step.T * this.width, bytes: 3 * step.T * this.width * 4 };
  }
}
