// The split-K linear kernels of decode steps (shaders/linear_splitk.wgsl), two variants of the linear.decode
// slot: a workgroup owns RG groups of 8 weight rows and splits K over KT slices of 8 invocations, each slice
// summing TM input rows' partial dot products over its share of the K-quads; the slices' partials meet in
// workgroup memory ("splitk"), or first across each subgroup by shuffles ("splitk_subgroup").
//
// Members, one per TM = 1, 2, 4, 8, 16 input rows (the fewest that cover the step; longer steps run TM = 16 rows
// at a time). All own one block of 32 rows per workgroup (RG = 4), so a 1536-row projection makes 48 workgroups
// and Qwen2.5's LM head 4748. The K-slices are what puts loads in flight (each of the rows * KT / RG invocations
// issues RG per step: rows * KT, whatever RG), so the matrix-vector products of TM = 1 and 2, bound by memory
// latency alone, get KT = 32 (256 invocations); TM = 4 to 16 get 16, as each weight quad loaded then serves 4 to
// 16 input rows and a slice's accumulators (RG * TM) and x loads grow with TM. The autotuner, not these
// defaults, picks between variants per adapter; splitkMember makes members of other shapes.
import { defineKernel } from "../gpu/kernel.ts";
import { MAX_GROUPS_PER_DIMENSION, WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearKernel, type LinearVariant } from "./linear.ts";
import type { OpSlot, VariantInfo } from "./variant.ts";

/** A member's geometry: TM input rows, RG groups of 8 weight rows, KT K-slices of 8 invocations. */
export interface SplitKShape {
  TM: number;
  RG: number;
  KT: number;
}

export const SPLITK_SHAPES: readonly SplitKShape[] = [
  { TM: 1, RG: 4, KT: 32 },
  { TM: 2, RG: 4, KT: 32 },
  { TM: 4, RG: 4, KT: 16 },
  { TM: 8, RG: 4, KT: 16 },
  { TM: 16, RG: 4, KT: 16 },
];

const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * What a member writes: the linear layer's outputs; SwiGLU of a stacked gate/up projection's
 * (src/ops/gate-up-swiglu.ts); or the LM head's largest logit per workgroup and row (src/ops/lm-head.ts).
 */
export type SplitKEpilogue = "none" | "swiglu" | "argmax";

/** The member of one shape; `subgroups`: the subgroup-shuffle reduction (needs the adapter's subgroups). */
export function splitkMember({ TM, RG, KT }: SplitKShape, subgroups: boolean, epilogue: SplitKEpilogue = "none"): LinearKernel {
  const swiglu = epilogue === "swiglu";
  const WG = KT * WEIGHT_LAYOUT.lanes;
  // The shader's reduction halves and splits these (butterfly steps over K-slices, rounds of input rows through
  // workgroup memory), a workgroup's groups must lie in one block of the layout, and 256 invocations is
  // WebGPU's default limit per workgroup.
  if (![TM, RG, KT].every(isPowerOfTwo) || WEIGHT_LAYOUT.groups % RG !== 0 || WG > 256 || (swiglu && RG < 2)) {
    throw new Error(`split-K linear shape TM=${TM} RG=${RG} KT=${KT}: TM, RG and KT must be powers of two, RG divide ${WEIGHT_LAYOUT.groups}` +
      `${swiglu ? " and be at least 2 (a gate and an up group)" : ""}, 8 KT <= 256`);
  }
  return defineKernel({
    name: `linear.splitk${subgroups ? "_subgroup" : ""}${epilogue === "none" ? "" : `_${epilogue}`}.m${TM}r${RG * WEIGHT_LAYOUT.lanes}k${KT}`,
    shader: "linear_splitk",
    weights: true,
    workgroupSize: WG,
    constants: { TM, RG },
    overrides: { ACCUMULATE: "bool" },
    flags: ["SUBGROUPS", "SWIGLU", "ARGMAX"],
    defines: [...(subgroups ? ["SUBGROUPS"] : []), ...(epilogue === "none" ? [] : [epilogue.toUpperCase()])],
    bindings: LINEAR_BINDINGS,
    uniforms: LINEAR_UNIFORMS,
  });
}

/**
 * One workgroup per (RG * 8 weight rows, TM input rows), numbered along x then y as the shader reads them: x at
 * most 65535, so that any part (the tests' 262147 rows) and any M fit.
 */
export function splitkGrid(member: LinearKernel, rows: number, M: number): [number, number] {
  const { TM, RG } = member.constants!;
  // A SwiGLU member's workgroup writes half its groups' rows: the gate's, each with its up row.
  const outputGroups = member.defines?.includes("SWIGLU") ? RG / 2 : RG;
  const total = Math.ceil(rows / (outputGroups * WEIGHT_LAYOUT.lanes)) * Math.ceil(M / TM);
  const x = Math.min(total, MAX_GROUPS_PER_DIMENSION);
  return [x, Math.ceil(total / x)];
}

function splitkVariant(name: string, subgroups: boolean, about: string): LinearVariant {
  const members = SPLITK_SHAPES.map((shape) => splitkMember(shape, subgroups));
  const widest = members.at(-1)!;
  return {
    slot: "linear.decode", name, precision: "f32", requires: subgroups ? ["subgroups"] : [], about,
    members,
    member: (M) => members.find((m) => m.constants!.TM >= M) ?? widest,
    grid: splitkGrid,
  };
}

export const SPLITK_DECODE = splitkVariant("splitk", false,
  "a workgroup per 32 weight rows, K split over 16 or 32 slices of 8 invocations, partial sums reduced in workgroup memory");
export const SPLITK_SUBGROUP_DECODE = splitkVariant("splitk_subgroup", true,
  "splitk with the K-slices' partial sums reduced across each subgroup by shuffles, then across subgroups in workgroup memory");

/** A variant of a fusion slot (swiglu.decode, lm_head.decode): split-K members with an epilogue, none for "separate". */
export interface FusionVariant<S extends OpSlot> extends VariantInfo {
  slot: S;
  /** The fused kernel's members, one per TM input rows; none for "separate" (the unfused kernels). */
  members: readonly LinearKernel[];
}

/** "separate" when `fused` is undefined; else the split-K kernel with the epilogue, by shuffles when `fused.subgroups`. */
export function fusionVariant<S extends OpSlot>(slot: S, name: string, about: string,
  fused?: { epilogue: Exclude<SplitKEpilogue, "none">; subgroups: boolean }): FusionVariant<S> {
  return {
    slot, name, precision: "f32", requires: fused?.subgroups ? ["subgroups"] : [], about,
    members: fused ? SPLITK_SHAPES.map((shape) => splitkMember(shape, fused.subgroups, fused.epilogue)) : [],
  };
}
