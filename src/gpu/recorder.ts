// Recording one submission: dispatches of bound kernels, with compute passes opened lazily around buffer copies.
import { MAX_GROUPS_PER_DIMENSION } from "./layout.ts";
import type { KernelCall, PipelineRef } from "./kernel.ts";

export class Recorder {
  readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | undefined;
  dispatches = 0;

  constructor(readonly device: GPUDevice) {
    this.encoder = device.createCommandEncoder();
  }

  /** Records `call` run by `pipeline` (one of its family's) over x × y × z workgroups; an empty grid records nothing. */
  dispatch(pipeline: PipelineRef, call: KernelCall, x: number, y = 1, z = 1): void {
    if (x === 0 || y === 0 || z === 0) return;
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline.get());
    this.pass.setBindGroup(0, call.bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  submit(): void {
    this.endPass();
    this.device.queue.submit([this.encoder.finish()]);
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }
}

/** Spreads n workgroups over x and y when n exceeds the per-dimension limit (such kernels linearise the two). */
export function grid(n: number): [number, number] {
  if (n <= MAX_GROUPS_PER_DIMENSION) return [n, 1];
  const y = Math.ceil(n / MAX_GROUPS_PER_DIMENSION);
  return [Math.ceil(n / y), y];
}
