// Today's linear kernels (shaders/linear.wgsl): each invocation owns whole weight rows over all of K (lane `lane` of
// RB blocks of the weight layout: 4 RB rows) and TM input rows, with no barrier and no cross-invocation reduction.
// Two variants of every linear slot: "rows" (RB = 1, today's) and "blocks" (RB = 2 or 4), whose every x value read
// serves 8 or 16 weight rows; on lavapipe a decode step of 16 rows took 0.45x the time of "rows" and a prefill
// 0.44x (bench/NOTES.md, "Batching"). Decode steps use the member with the fewest input rows per invocation that
// covers the step; longer steps the member of 8.
import { defineKernel } from "../gpu/kernel.ts";
import { WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { checkedGrid, LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearKernel, type LinearVariant } from "./linear.ts";

/**
 * The member with TM input rows and RB weight blocks per invocation: each weight quad loaded serves TM rows, each x
 * value 4 RB. TM = 1 is the matrix-vector product of decoding one sequence.
 */
const rowsMember = (TM: number, RB = 1): LinearKernel => defineKernel({
  name: RB === 1 ? `linear.rows${TM}` : `linear.blocks${TM}x${RB}`,
  shader: "linear",
  weights: true,
  workgroupSize: 64,
  constants: { TM, RB },
  overrides: { ACCUMULATE: "bool" },
  bindings: LINEAR_BINDINGS,
  uniforms: LINEAR_UNIFORMS,
});

/** Fewest rows per invocation first. */
export const LINEAR_ROWS: readonly LinearKernel[] = [1, 2, 4, 8].map((TM) => rowsMember(TM));
// One input row holds 2 blocks' rows (8 sums), more input rows 4 blocks (16 TM sums).
const LINEAR_BLOCKS: readonly LinearKernel[] = [rowsMember(1, 2), rowsMember(2, 4), rowsMember(4, 4), rowsMember(8, 4)];

function rowsGrid(member: LinearKernel, rows: number, M: number): [number, number] {
  const { TM, RB } = member.constants!;
  const groups = Math.ceil(Math.ceil(rows / WEIGHT_LAYOUT.block) / RB) * WEIGHT_LAYOUT.lanes;
  return checkedGrid(member, rows, M, [Math.ceil(groups / member.workgroupSize), Math.ceil(M / TM)]);
}

/** A decode variant of `members` (fewest input rows first) and its prefill variant, the widest member. */
function rowsVariants(name: string, members: readonly LinearKernel[]): [LinearVariant, LinearVariant] {
  const widest = members.at(-1)!;
  const rows = (ms: readonly LinearKernel[]) => [...new Set(ms.map((m) => WEIGHT_LAYOUT.groups * m.constants!.RB))].join(" or ");
  return [{
    slot: "linear.decode", name, precision: "f32", requires: [],
    about: `an invocation per ${rows(members)} weight rows over all of K, TM = 1, 2, 4 or 8 input rows (the fewest that cover the step)`,
    members,
    member: (M) => members.find((m) => m.constants!.TM >= M) ?? widest,
    grid: rowsGrid,
  }, {
    slot: "linear.prefill", name, precision: "f32", requires: [],
    about: `an invocation per ${rows([widest])} weight rows over all of K and 8 input rows`,
    members: [widest],
    member: () => widest,
    grid: rowsGrid,
  }];
}

export const [ROWS_DECODE, ROWS_PREFILL] = rowsVariants("rows", LINEAR_ROWS);
export const [BLOCKS_DECODE, BLOCKS_PREFILL] = rowsVariants("blocks", LINEAR_BLOCKS);
