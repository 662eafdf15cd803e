// The first half of the Qwen2 MLP, act = silu(gate_proj(h)) * up_proj(h), over the stacked gate/up projection.
// The swiglu.decode slot chooses how decode steps (up to DECODE_MAX_ROWS rows) compute it: the linear layer (the
// linear.decode slot's variant) then the SwiGLU kernel ("separate": two dispatches, the projection's 2 I outputs
// per row written and read back), or one split-K kernel with SwiGLU as its epilogue (shaders/linear_splitk.wgsl
// with SWIGLU: one dispatch, only the I activations written). Longer steps always run the two, whose cost is
// dominated by the products, not by the activations' bytes.
import type { KernelCall, Kernels, PipelineRef } from "../gpu/kernel.ts";
import { elementBytes, type GpuMatrix } from "../gpu/matrix.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { Linear, LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearKernel, type LinearVariant } from "./linear.ts";
import { fusionVariant, splitkGrid, type FusionVariant } from "./linear-splitk.ts";
import { check, Op, type Cost, type Step } from "./op.ts";
import { SwiGlu } from "./swiglu.ts";
import { DECODE_MAX_ROWS } from "./variant.ts";

export type SwiGluVariant = FusionVariant<"swiglu.decode">;

export const SEPARATE_SWIGLU = fusionVariant("swiglu.decode", "separate",
  "the gate/up projection by the linear.decode variant, then the SwiGLU kernel (two dispatches)");
export const SPLITK_SWIGLU = fusionVariant("swiglu.decode", "splitk",
  "one split-K kernel (linear.decode=splitk's geometry) computing each output's gate and up rows and writing silu(gate) * up",
  { epilogue: "swiglu", subgroups: false });
export const SPLITK_SUBGROUP_SWIGLU = fusionVariant("swiglu.decode", "splitk_subgroup",
  "the fused splitk kernel with the K-slices' partial sums reduced by subgroup shuffles first", { epilogue: "swiglu", subgroups: true });

export interface GateUpSwiGluOptions {
  /** The linear layer's variants (the separate path, and every step longer than a decode step). */
  linear: { decode: LinearVariant; prefill: LinearVariant };
  /** How decode steps compute it. */
  decode: SwiGluVariant;
}

export class GateUpSwiGlu extends Op {
  private readonly linear: Linear;
  private readonly swiglu: SwiGlu;
  private readonly fused?: { call: KernelCall<keyof typeof LINEAR_BINDINGS, keyof typeof LINEAR_UNIFORMS>; pipelines: Map<LinearKernel, PipelineRef>; members: readonly LinearKernel[] };

  /** W: [gate; up], 2 width rows of h's width; gateUp: the projection's output, act: [rows, width]. */
  constructor(kernels: Kernels, h: GPUBuffer, private readonly W: GpuMatrix, gateUp: GPUBuffer, act: GPUBuffer,
    private readonly width: number, opts: GateUpSwiGluOptions) {
    super(kernels, `gate_up+swiglu ${W.name}`, "linear");
    check(W.rows === 2 * width, `${W.name}: ${W.rows} rows, not the 2 x ${width} of a stacked gate/up projection`);
    this.linear = new Linear(kernels, h, W, gateUp, { variants: opts.linear });
    this.swiglu = new SwiGlu(kernels, gateUp, act, width);
    const { members } = opts.decode;
    if (members.length > 0) {
      check(W.parts.length === 1, `${W.name}: swiglu.decode=${opts.decode.name} needs the gate/up matrix in one buffer, ` +
        `but it is split in ${W.parts.length} (the device's maxStorageBufferBindingSize); swiglu.decode=separate runs it`);
      const call = this.bind(members[0], { x: h, w: W.parts[0].buffer, y: act });
      this.fused = { call, members, pipelines: new Map(members.map((m) => [m, call.pipeline(m, { dtype: W.dtype })])) };
    }
  }

  private fusedAt(step: Step): boolean {
    return this.fused !== undefined && step.T <= DECODE_MAX_ROWS;
  }

  encode(rec: Recorder, step: Step): void {
    if (!this.fusedAt(step)) {
      this.linear.encode(rec, step);
      this.swiglu.encode(rec, step);
      return;
    }
    const { call, members, pipelines } = this.fused!;
    const M = step.T;
    const member = members.find((m) => m.constants!.TM >= M) ?? members.at(-1)!;
    call.uniforms.set({ M, K: this.W.cols, N: this.width, n0: 0, rows: this.width });
    rec.dispatch(pipelines.get(member)!, call, ...splitkGrid(member, this.width, M));
  }

  cost(step: Step): Cost {
    if (!this.fusedAt(step)) {
      const [a, b] = [this.linear.cost(step), this.swiglu.cost(step)];
      return { flops: a.flops + b.flops, bytes: a.bytes + b.bytes };
    }
    const M = step.T, { rows: N, cols: K } = this.W;
    return { flops: 2 * M * N * K + 5 * M * this.width, bytes: N * K * elementBytes(this.W.dtype) + M * K * 4 + M * this.width * 4 };
  }

  override destroy(): void {
    this.linear.destroy();
    this.swiglu.destroy();
    super.destroy();
  }
}
