// Linear layer, y = x W^T (+ bias) (+ y), with W [N, K] in HF's orientation, x [M, K], y [M, N]. One op per weight
// matrix. Its kernels are variants of one family (the bindings and uniforms below): one variant for steps of one
// row (a single sequence's decode: the matrix-vector product), one for decode steps of several (up to
// DECODE_MAX_ROWS rows), one for longer ones, each picking its member for the step's rows.
import type { BindingSpec, KernelDecl, Kernels, PipelineRef, WeightDType } from "../gpu/kernel.ts";
import { MAX_GROUPS_PER_DIMENSION } from "../gpu/layout.ts";
import { elementBytes, type GpuMatrix } from "../gpu/matrix.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { check, Op, type Cost, type Step } from "./op.ts";
import { DECODE_MAX_ROWS, type VariantInfo } from "./variant.ts";

export const LINEAR_BINDINGS = {
  x: "read",
  w: "read",
  bias: { access: "read", when: "HAS_BIAS" },
  y: "read_write",
} satisfies Record<string, BindingSpec>;
export const LINEAR_UNIFORMS = { M: "u32", K: "u32", N: "u32", n0: "u32", rows: "u32" } as const;

export type LinearKernel = KernelDecl<keyof typeof LINEAR_BINDINGS, keyof typeof LINEAR_UNIFORMS>;

/** The slot whose variant runs a step of M input rows: one row, a decode step of up to DECODE_MAX_ROWS, or longer. */
export function linearSlot(M: number): LinearVariant["slot"] {
  return M === 1 ? "linear.vector" : M <= DECODE_MAX_ROWS ? "linear.decode" : "linear.prefill";
}

/** A member's grid for a part of `rows` weight rows and M input rows, refused past the per-dimension limit. */
export function checkedGrid(member: LinearKernel, rows: number, M: number, grid: [number, number]): [number, number] {
  if (Math.max(...grid) > MAX_GROUPS_PER_DIMENSION) {
    throw new Error(`${member.name}: ${rows} weight rows x ${M} input rows need ${grid.join(" x ")} workgroups, ` +
      `over ${MAX_GROUPS_PER_DIMENSION} per dimension`);
  }
  return grid;
}

/** A way of computing the linear layer: its member kernels and their dispatch geometry. */
export interface LinearVariant extends VariantInfo {
  slot: "linear.vector" | "linear.decode" | "linear.prefill";
  /** Every member it may run (compiled at load). */
  members: readonly LinearKernel[];
  /** The member for a step of M input rows. */
  member(M: number): LinearKernel;
  /** Workgroups (x, y) for one part of `rows` weight rows and M input rows. */
  grid(member: LinearKernel, rows: number, M: number): [number, number];
}

export interface LinearOptions {
  /**
   * The variants for one-row steps (default: the decode one), decode steps and longer ones (see
   * src/ops/kernel-variants.ts).
   */
  variants: { vector?: LinearVariant; decode: LinearVariant; prefill: LinearVariant };
  bias?: GPUBuffer;
  /** Add into y instead of overwriting it (residual connections). */
  accumulate?: boolean;
  /** One row per step output rather than per token (the LM head, over the gathered rows that need logits). */
  perOutput?: boolean;
}

export class Linear extends Op {
  private readonly parts;
  private readonly variants: Record<LinearVariant["slot"], { variant: LinearVariant; pipelines: Map<LinearKernel, PipelineRef> }>;

  constructor(kernels: Kernels, x: GPUBuffer, private readonly W: GpuMatrix, y: GPUBuffer, private readonly opts: LinearOptions) {
    check(W.cols % 2 === 0, `${W.name}: input size ${W.cols} must be even`);
    // The LM head is the linear over the rows needing logits; profiles count it apart.
    super(kernels, `linear ${W.name}`, opts.perOutput ? "lm_head" : "linear");
    this.parts = W.parts.map((part, i) => ({
      part, call: this.bind(opts.variants.decode.members[0], { x, w: part.buffer, bias: opts.bias, y }, `${this.label}#${i}`),
    }));
    const compile = { dtype: W.dtype, overrides: { ACCUMULATE: opts.accumulate ?? false } };
    const call = this.parts[0].call;
    const { vector = opts.variants.decode, decode, prefill } = opts.variants;
    const bound = (variant: LinearVariant) => ({ variant, pipelines: new Map(variant.members.map((m) => [m, call.pipeline(m, compile)])) });
    this.variants = { "linear.vector": bound(vector), "linear.decode": bound(decode), "linear.prefill": bound(prefill) };
  }

  /** Rows computed in a step: every token, or one per output. */
  private rows(step: Step): number {
    return this.opts.perOutput ? step.outputs : step.T;
  }

  encode(rec: Recorder, step: Step): void {
    const M = this.rows(step);
    const { variant, pipelines } = this.variants[linearSlot(M)];
    const member = variant.member(M);
    const pipeline = pipelines.get(member)!;
    for (const { part, call } of this.parts) {
      call.uniforms.set({ M, K: this.W.cols, N: this.W.rows, n0: part.row0, rows: part.rows });
      rec.dispatch(pipeline, call, ...variant.grid(member, part.rows, M));
    }
  }

  cost(step: Step): Cost {
    const M = this.rows(step);
    const { rows: N, cols: K } = this.W;
    const outBytes = M * N * 4 * (this.opts.accumulate ? 2 : 1);
    return { flops: 2 * M * N * K, bytes: N * K * elementBytes(this.W.dtype) + M * K * 4 + outBytes + (this.opts.bias ? N * 4 : 0) };
  }
}
