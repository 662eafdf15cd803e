// The LM head and the greedy choice: logits = lm_head(h[output rows]); next = argmax(logits). The lm_head.decode
// slot chooses how steps of up to DECODE_MAX_ROWS outputs whose logits nobody reads compute it: the linear layer
// then the argmax kernel ("separate": every logit written, then read by one workgroup per row), or the split-K
// LM head with the argmax's first half as its epilogue (shaders/linear_splitk.wgsl with ARGMAX: each workgroup
// writes the largest of its 32 logits and its row) and the argmax kernel over those pairs (PARTIALS), so that
// the vocabulary's logits are never written and the final scan reads 1/16 of the bytes. Steps whose logits are
// read back (sampling, `dump`, the golden check's last logits) and longer ones run the separate kernels.
import type { KernelCall, Kernels, PipelineRef } from "../gpu/kernel.ts";
import { WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { elementBytes, type GpuMatrix } from "../gpu/matrix.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { Argmax } from "./argmax.ts";
import { Linear, LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearKernel, type LinearVariant } from "./linear.ts";
import { fusionVariant, splitkGrid, type FusionVariant } from "./linear-splitk.ts";
import { check, Op, type Cost, type Step } from "./op.ts";
import { DECODE_MAX_ROWS } from "./variant.ts";

export type LmHeadVariant = FusionVariant<"lm_head.decode">;

export const SEPARATE_LM_HEAD = fusionVariant("lm_head.decode", "separate",
  "the LM head by the linear.decode variant, every logit written, then the argmax kernel over them");
export const SPLITK_ARGMAX = fusionVariant("lm_head.decode", "splitk",
  "the split-K LM head writing each workgroup's largest logit and its row instead of the logits, then the argmax over those",
  { epilogue: "argmax", subgroups: false });
export const SPLITK_SUBGROUP_ARGMAX = fusionVariant("lm_head.decode", "splitk_subgroup",
  "the fused splitk LM head with the K-slices' partial sums reduced by subgroup shuffles first", { epilogue: "argmax", subgroups: true });

/** Indices travel as f32, exact up to here. */
const MAX_EXACT_INDEX = 2 ** 24;

export interface LmHeadOptions {
  /** The linear layer's variants (the separate path). */
  linear: { decode: LinearVariant; prefill: LinearVariant };
  decode: LmHeadVariant;
}

export class LmHead extends Op {
  private readonly linear: Linear;
  private readonly argmax: Argmax;
  private readonly fused?: {
    /** One per part of W: each dispatch binds its own buffer. */
    calls: KernelCall<keyof typeof LINEAR_BINDINGS, keyof typeof LINEAR_UNIFORMS>[];
    pipelines: Map<LinearKernel, PipelineRef>;
    members: readonly LinearKernel[];
    argmax: Argmax;
  };

  /** hOut: the gathered rows [outputs, H]; logits: [outputs, V] (the fused path's pairs too); next: u32 [outputs]. */
  constructor(kernels: Kernels, hOut: GPUBuffer, private readonly W: GpuMatrix, logits: GPUBuffer, next: GPUBuffer, opts: LmHeadOptions) {
    super(kernels, `lm_head+argmax ${W.name}`, "lm_head");
    this.linear = new Linear(kernels, hOut, W, logits, { variants: opts.linear, perOutput: true });
    this.argmax = new Argmax(kernels, logits, next, W.rows);
    const { members } = opts.decode;
    if (members.length === 0) return;
    // Rows per (largest logit, row) pair: a member's workgroup, the same in every member.
    const pairRows = members[0].constants!.RG * WEIGHT_LAYOUT.lanes;
    check(members.every((m) => m.constants!.RG * WEIGHT_LAYOUT.lanes === pairRows), `lm_head.decode=${opts.decode.name}: members of different row blocks`);
    const misaligned = W.parts.find((p) => p.row0 % pairRows !== 0);
    check(misaligned === undefined, `${W.name}: lm_head.decode=${opts.decode.name} needs parts starting at multiples of ${pairRows} rows, ` +
      `one starts at ${misaligned?.row0}; lm_head.decode=separate runs it`);
    check(W.rows <= MAX_EXACT_INDEX, `${W.name}: lm_head.decode=${opts.decode.name} carries token ids as f32, exact up to ${MAX_EXACT_INDEX}; ` +
      `the vocabulary has ${W.rows}; lm_head.decode=separate runs it`);
    const calls = W.parts.map((part, i) => this.bind(members[0], { x: hOut, w: part.buffer, y: logits }, `${this.label}#${i}`));
    this.fused = {
      calls, members, pipelines: new Map(members.map((m) => [m, calls[0].pipeline(m, { dtype: W.dtype })])),
      argmax: new Argmax(kernels, logits, next, Math.ceil(W.rows / pairRows), true),
    };
  }

  private fusedAt(step: Step): boolean {
    return this.fused !== undefined && step.outputs <= DECODE_MAX_ROWS && !step.logits;
  }

  encode(rec: Recorder, step: Step): void {
    if (!this.fusedAt(step)) {
      this.linear.encode(rec, step);
      this.argmax.encode(rec, step);
      return;
    }
    const { calls, members, pipelines, argmax } = this.fused!;
    const M = step.outputs;
    const member = members.find((m) => m.constants!.TM >= M) ?? members.at(-1)!;
    this.W.parts.forEach((part, i) => {
      const call = calls[i];
      call.uniforms.set({ M, K: this.W.cols, N: this.W.rows, n0: part.row0, rows: part.rows });
      rec.dispatch(pipelines.get(member)!, call, ...splitkGrid(member, part.rows, M));
    });
    argmax.encode(rec, step);
  }

  cost(step: Step): Cost {
    if (!this.fusedAt(step)) {
      const [a, b] = [this.linear.cost(step), this.argmax.cost(step)];
      return { flops: a.flops + b.flops, bytes: a.bytes + b.bytes };
    }
    const M = step.outputs, { rows: N, cols: K } = this.W;
    const partials = this.fused!.argmax.cost(step);
    return { flops: 2 * M * N * K + M * N + partials.flops, bytes: N * K * elementBytes(this.W.dtype) + M * K * 4 + 2 * partials.bytes };
  }

  override destroy(): void {
    this.linear.destroy();
    this.argmax.destroy();
    this.fused?.argmax.destroy();
    super.destroy();
  }
}
