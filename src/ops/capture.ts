// Copies rows of an activation out of the forward pass when a step asks for them by name (golden checks and
// embeddings read intermediate results this way); records nothing otherwise.
import type { Recorder } from "../gpu/recorder.ts";
import type { Cost, Step, StepOp } from "./op.ts";

export class CapturePoint implements StepOp {
  readonly family = "capture";

  constructor(readonly label: string, private readonly src: GPUBuffer, private readonly rowBytes: number) {}

  encode(rec: Recorder, step: Step): void {
    const copy = step.capture?.get(this.label);
    if (!copy) return;
    for (const r of copy.ranges) {
      rec.copy(this.src, r.srcRow * this.rowBytes, copy.buffer, r.dstRow * this.rowBytes, r.rows * this.rowBytes);
    }
  }

  cost(): Cost {
    return { flops: 0, bytes: 0 };
  }

  destroy(): void {}
}
