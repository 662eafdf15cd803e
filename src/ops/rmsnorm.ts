// RMSNorm over the rows of an activation (Qwen2RMSNorm): y = x / sqrt(mean(x^2) + eps) * weight.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const RMSNORM = defineKernel({
  name: "rmsnorm",
  shader: "rmsnorm",
  workgroupSize: 64,
  bindings: { x: "read", weight: "read", y: "read_write" },
  uniforms: { H: "u32", eps: "f32" },
});

export class RmsNorm extends SingleKernelOp<typeof RMSNORM> {
  constructor(kernels: Kernels, name: string, x: GPUBuffer, weight: GPUBuffer, y: GPUBuffer, private readonly H: number, eps: number) {
    super(kernels, `rmsnorm ${name}`, "rmsnorm", RMSNORM, { x, weight, y });
    this.call.uniforms.set({ H, eps });
  }

  encode(rec: Recorder, step: Step): void {
    rec.dispatch(this.pipeline, this.call, step.T);
  }

  cost(step: Step): Cost {
    return { flops: 4 * step.T * this.H, bytes: (2 * step.T + 1) * this.H * 4 };
  }
}
