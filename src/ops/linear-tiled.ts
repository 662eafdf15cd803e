// The tiled linear kernels (shaders/linear_tiled.wgsl), variants "tiled" and "tiled_f16" of linear.prefill: a
// workgroup per output tile of BM input rows x BN weight rows, K walked in tiles of BK staged in workgroup memory,
// TM x TN outputs per invocation. The tile sizes are each member's constants. Members are sized for GPUs (256
// invocations, the WebGPU default limit; under 16 KiB of workgroup memory, the default limit too), not for a CPU
// driver: which variant runs is measured per adapter.
import { defineKernel } from "../gpu/kernel.ts";
import { WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { checkedGrid, LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearKernel, type LinearVariant } from "./linear.ts";

/** An output tile of BM input rows x BN weight rows, K tiles of BK, TM x TN outputs per invocation. */
interface Tile {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN: number;
}

function tiledMember(name: string, t: Tile, f16: boolean): LinearKernel {
  // The shader stages whole blocks of the weight layout and whole quads, and splits the tile evenly.
  if (t.BN % WEIGHT_LAYOUT.block || t.BK % WEIGHT_LAYOUT.quadElements || t.BM % t.TM || t.BN % t.TN) {
    throw new Error(`${name}: tile ${JSON.stringify(t)} does not fit the weight layout or its invocations`);
  }
  return defineKernel({
    name: `linear.${name}.${t.BM}x${t.BN}x${t.BK}`,
    shader: "linear_tiled",
    weights: true,
    workgroupSize: (t.BM / t.TM) * (t.BN / t.TN),
    constants: { ...t },
    overrides: { ACCUMULATE: "bool" },
    flags: ["F16"],
    defines: f16 ? ["F16"] : [],
    bindings: LINEAR_BINDINGS,
    uniforms: LINEAR_UNIFORMS,
  });
}

/**
 * A variant of two members: 32 input rows per tile for short steps (up to 32 rows: fewer idle rows), 64 beyond.
 * Both take 64 weight rows (two blocks of the layout) and 256 invocations of 2 or 4 x 4 outputs. The f16 members
 * stage twice the K per tile in the same workgroup memory (10 KiB f32 at BK 16, 9 KiB f16 at BK 32).
 */
function tiledVariant(name: string, f16: boolean): LinearVariant {
  const BK = f16 ? 32 : 16;
  const short = tiledMember(name, { BM: 32, BN: 64, BK, TM: 2, TN: 4 }, f16);
  const long = tiledMember(name, { BM: 64, BN: 64, BK, TM: 4, TN: 4 }, f16);
  return {
    slot: "linear.prefill", name, precision: f16 ? "f16" : "f32", requires: f16 ? ["shader-f16"] : [],
    about: `workgroup tiles of 32 or 64 input rows x 64 weight rows, K tiles of ${BK} in workgroup memory, 2 or 4 x 4 ` +
      `outputs per invocation${f16 ? "; f16 tiles and products, f32 sums" : ""}`,
    members: [short, long],
    member: (M) => (M <= short.constants!.BM ? short : long),
    grid: tileGrid,
  };
}

/** Workgroups for a member of output tiles BM x BN (its constants): one per tile, x over weight rows. */
export function tileGrid(member: LinearKernel, rows: number, M: number): [number, number] {
  const { BM, BN } = member.constants!;
  return checkedGrid(member, rows, M, [Math.ceil(rows / BN), Math.ceil(M / BM)]);
}

export const TILED_PREFILL = tiledVariant("tiled", false);
export const TILED_F16_PREFILL = tiledVariant("tiled_f16", true);
