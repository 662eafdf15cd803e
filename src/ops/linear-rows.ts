// Today's linear kernels (shaders/linear.wgsl), the "rows" variant of both slots: each invocation owns W_GROUPS
// weight rows over all of K and TM input rows, with no barrier and no cross-invocation reduction. Decode steps use
// the member with the fewest rows per invocation that covers the step; longer steps the member of 8.
import { defineKernel } from "../gpu/kernel.ts";
import { WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearKernel, type LinearVariant } from "./linear.ts";

/**
 * The member with TM input rows per invocation: each weight quad loaded serves TM rows. TM = 1 is the
 * matrix-vector product of decoding one sequence.
 */
const rowsMember = (TM: number): LinearKernel => defineKernel({
  name: `linear.rows${TM}`,
  shader: "linear",
  weights: true,
  workgroupSize: 64,
  constants: { TM },
  overrides: { ACCUMULATE: "bool" },
  bindings: LINEAR_BINDINGS,
  uniforms: LINEAR_UNIFORMS,
});

/** Fewest rows per invocation first. */
export const LINEAR_ROWS: readonly LinearKernel[] = [1, 2, 4, 8].map(rowsMember);
const WIDEST = LINEAR_ROWS.at(-1)!;

const rowsGrid = (member: LinearKernel, rows: number, M: number): [number, number] =>
  [Math.ceil(Math.ceil(rows / WEIGHT_LAYOUT.groups) / member.workgroupSize), Math.ceil(M / member.constants!.TM)];

export const ROWS_DECODE: LinearVariant = {
  slot: "linear.decode", name: "rows", precision: "f32", requires: [],
  about: "an invocation per 4 weight rows over all of K, TM = 1, 2, 4 or 8 input rows (the fewest that cover the step)",
  members: LINEAR_ROWS,
  member: (M) => LINEAR_ROWS.find((m) => m.constants!.TM >= M) ?? WIDEST,
  grid: rowsGrid,
};

export const ROWS_PREFILL: LinearVariant = {
  slot: "linear.prefill", name: "rows", precision: "f32", requires: [],
  about: "an invocation per 4 weight rows over all of K and 8 input rows",
  members: [WIDEST],
  member: () => WIDEST,
  grid: rowsGrid,
};

