// The SwiGLU activation of the Qwen2 MLP, in place: gate = silu(gate) * up.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import { grid, type Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const SWIGLU = defineKernel({
  name: "swiglu",
  shader: "swiglu",
  workgroupSize: 64,
  bindings: { gate: "read_write", up: "read" },
  uniforms: { n: "u32" },
});

export class SwiGlu extends SingleKernelOp<typeof SWIGLU> {
  /** `width` elements per row (the intermediate size). */
  constructor(kernels: Kernels, gate: GPUBuffer, up: GPUBuffer, private readonly width: number) {
    super(kernels, "swiglu", "swiglu", SWIGLU, { gate, up });
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
