// The tiled attention variant, for prefill steps (shaders/attention_tiled.wgsl): a workgroup per (query tile, KV
// head) serves a tile of consecutive tokens times the KV head's query heads, over K/V tiles staged in workgroup
// memory. One member per head_dim class, so that the staged tiles fit in 32 KiB of workgroup memory.
import { defineKernel, type KernelDecl } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { AttentionContext, AttentionVariant } from "./attention.ts";
import { check, SingleKernelOp, type Cost, type Step } from "./op.ts";

const WG = 64;
const TILED_BINDINGS = { tokens: "read", q: "read", k_cache: "read", v_cache: "read", out: "read_write" } as const;
const TILED_UNIFORMS = { T: "u32", n_heads: "u32", n_kv: "u32", D: "u32", slot_len: "u32", scale: "f32", gw: "u32", bq: "u32" } as const;
type TiledKernel = KernelDecl<keyof typeof TILED_BINDINGS, keyof typeof TILED_UNIFORMS>;

/**
 * The member for head_dim <= MAX_D: ROWS (query, head) rows per workgroup and BK keys per tile. ROWS * MAX_D is
 * fixed (32 accumulators per invocation); BK is the largest power of two that keeps workgroupBytes within 32 KiB:
 * 20.5, 26.3 and 24.7 KiB for the members below.
 */
const tiledMember = (MAX_D: number, ROWS: number, BK: number): TiledKernel => defineKernel({
  name: `attention_tiled${MAX_D}`,
  shader: "attention_tiled",
  workgroupSize: WG,
  constants: { MAX_D, ROWS, BK },
  bindings: TILED_BINDINGS,
  uniforms: TILED_UNIFORMS,
});

/** Workgroup memory of a member (shaders/attention_tiled.wgsl): q and the K/V tile at a row stride of MAX_D + 1, the scores, 2 floats per row. */
function workgroupBytes(m: TiledKernel): number {
  const { MAX_D, ROWS, BK } = m.constants!;
  return 4 * ((ROWS + BK) * (MAX_D + 1) + ROWS * BK + 2 * ROWS);
}

/** Smallest head_dim class first. */
const TILED_MEMBERS: readonly TiledKernel[] = [tiledMember(64, 32, 32), tiledMember(128, 16, 32), tiledMember(256, 8, 16)];

class TiledAttention extends SingleKernelOp<TiledKernel> {
  private readonly bq: number;
  private readonly subgroups: number;

  constructor(private readonly c: AttentionContext) {
    const { b, dims: { nHeads, nKv, headDim: D } } = c;
    const member = TILED_MEMBERS.find((m) => m.constants!.MAX_D >= D)!;
    const limit = c.kernels.device.limits.maxComputeWorkgroupStorageSize;
    check(workgroupBytes(member) <= limit, `${c.label}: the tiled attention for head_dim ${D} needs ${workgroupBytes(member)} bytes of ` +
      `workgroup memory; this device has ${limit}`);
    super(c.kernels, c.label, "attention", member, { tokens: b.tokens, q: b.q, k_cache: b.kCache, v_cache: b.vCache, out: c.out });
    const rows = member.constants!.ROWS, G = nHeads / nKv;
    // A whole GQA group per workgroup when it fits in the rows, else even parts of it; the tile's tokens fill the rest.
    this.subgroups = Math.ceil(G / rows);
    const gw = Math.ceil(G / this.subgroups);
    this.bq = Math.floor(rows / gw);
    this.call.uniforms.set({ n_heads: nHeads, n_kv: nKv, D, slot_len: b.slotLen, scale: 1 / Math.sqrt(D), gw, bq: this.bq });
  }

  encode(rec: Recorder, step: Step): void {
    this.call.uniforms.set({ T: step.T });
    rec.dispatch(this.pipeline, this.call, Math.ceil(step.T / this.bq), this.c.dims.nKv * this.subgroups);
  }

  cost(): Cost {
    return { flops: 0, bytes: 0 };
  }
}

export const TILED_PREFILL: AttentionVariant = {
  slot: "attention.prefill", name: "tiled", precision: "f32", requires: [], maxHeadDim: TILED_MEMBERS.at(-1)!.constants!.MAX_D,
  about: "a workgroup per (tile of consecutive tokens, KV head) for every query head of the group, K/V tiles in workgroup memory, " +
    "online softmax per row",
  create: (c) => new TiledAttention(c),
};
