// Linear layer, y = x W^T (+ bias) (+ y), with W [N, K] in HF's orientation, x [M, K], y [M, N]. One op per weight
// matrix; per step it runs the member of the family that fits the step's rows: the decode kernel for one row, a
// thin one for a few, the prefill kernel for more.
import { defineKernel, type BindingSpec, type Kernels } from "../gpu/kernel.ts";
import { WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { DTYPE_BYTES, type GpuMatrix } from "../gpu/matrix.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { check, Op, type Cost, type Step } from "./op.ts";

const LINEAR_BINDINGS = {
  x: "read",
  w: "read",
  bias: { access: "read", when: "HAS_BIAS" },
  y: "read_write",
} satisfies Record<string, BindingSpec>;
const LINEAR_UNIFORMS = { M: "u32", K: "u32", N: "u32", n0: "u32", rows: "u32" } as const;

/** One input row: the matrix-vector product of decoding. */
export const LINEAR_DECODE = defineKernel({
  name: "linear.decode",
  shader: "linear",
  weights: true,
  workgroupSize: 64,
  constants: { TM: 1 },
  overrides: { ACCUMULATE: "bool" },
  bindings: LINEAR_BINDINGS,
  uniforms: LINEAR_UNIFORMS,
});

/** TM input rows per invocation, so that each weight quad loaded serves TM rows. */
export const LINEAR_PREFILL = defineKernel({ ...LINEAR_DECODE, name: "linear.prefill", constants: { TM: 8 } });

/**
 * Thin matrices (a decode step of a few sequences): as many rows per invocation as the step has, so that no
 * invocation computes rows that are thrown away.
 */
export const LINEAR_THIN = [2, 4].map((TM) => defineKernel({ ...LINEAR_DECODE, name: `linear.rows${TM}`, constants: { TM } }));

/** The family, fewest rows per invocation first. */
const BY_ROWS = [LINEAR_DECODE, ...LINEAR_THIN, LINEAR_PREFILL];

export interface LinearOptions {
  bias?: GPUBuffer;
  /** Add into y instead of overwriting it (residual connections). */
  accumulate?: boolean;
  /** One row per step output rather than per token (the LM head, over the gathered rows that need logits). */
  perOutput?: boolean;
}

export class Linear extends Op {
  private readonly parts;
  private readonly variants;

  constructor(kernels: Kernels, x: GPUBuffer, private readonly W: GpuMatrix, y: GPUBuffer, private readonly opts: LinearOptions = {}) {
    check(W.cols % 2 === 0, `${W.name}: input size ${W.cols} must be even`);
    // The LM head is the linear over the rows needing logits; profiles count it apart.
    super(kernels, `linear ${W.name}`, opts.perOutput ? "lm_head" : "linear");
    this.parts = W.parts.map((part, i) => ({
      part, call: this.bind(LINEAR_DECODE, { x, w: part.buffer, bias: opts.bias, y }, `${this.label}#${i}`),
    }));
    const variant = { dtype: W.dtype, overrides: { ACCUMULATE: opts.accumulate ?? false } };
    const call = this.parts[0].call;
    this.variants = BY_ROWS.map((decl) => ({ decl, pipeline: call.pipeline(decl, variant) }));
  }

  /** Rows computed in a step: every token, or one per output. */
  private rows(step: Step): number {
    return this.opts.perOutput ? step.outputs : step.T;
  }

  encode(rec: Recorder, step: Step): void {
    const M = this.rows(step);
    // The fewest rows per invocation that cover the step's rows in one pass, or the widest for long steps.
    const { decl, pipeline } = this.variants.find((v) => v.decl.constants!.TM >= M) ?? this.variants.at(-1)!;
    const groups = (rows: number) => Math.ceil(Math.ceil(rows / WEIGHT_LAYOUT.groups) / decl.workgroupSize);
    for (const { part, call } of this.parts) {
      call.uniforms.set({ M, K: this.W.cols, N: this.W.rows, n0: part.row0, rows: part.rows });
      rec.dispatch(pipeline, call, groups(part.rows), Math.ceil(M / decl.constants!.TM));
    }
  }

  cost(step: Step): Cost {
    const M = this.rows(step);
    const { rows: N, cols: K } = this.W;
    const outBytes = M * N * 4 * (this.opts.accumulate ? 2 : 1);
    return { flops: 2 * M * N * K, bytes: N * K * DTYPE_BYTES[this.W.dtype] + M * K * 4 + outBytes + (this.opts.bias ? N * 4 : 0) };
  }
}
