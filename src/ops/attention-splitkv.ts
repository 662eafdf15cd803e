// The split-KV ("flash-decoding") attention variant, for decode steps: each token's keys are cut into chunks over
// workgroups, one workgroup per (chunk, KV head, token) serves the whole GQA group of query heads, and a second
// kernel merges the chunks by log-sum-exp (shaders/attention_splitkv.wgsl, attention_splitkv_merge.wgsl).
import { BufferSet } from "../gpu/buffers.ts";
import { defineKernel, type KernelCall, type KernelDecl, type PipelineRef } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { AttentionContext, AttentionVariant } from "./attention.ts";
import { check, Op, type Cost, type Step } from "./op.ts";
import { DECODE_MAX_ROWS } from "./variant.ts";

const WG = 64;
/** Output dims per invocation: head_dim <= WG * MAX_DPT. */
const MAX_DPT = 4;
/** Query heads per workgroup: a whole KV head's group for every Qwen2.5 model (at most 8); larger groups take several. */
const MAX_G = 8;
/**
 * The most chunks a token's keys are cut into: enough workgroups for a large GPU at a few KV heads, and what sizes
 * the scratch (by decode tokens, not by the context length: longer contexts get longer chunks).
 */
const MAX_CHUNKS = 32;

export const SPLITKV = defineKernel({
  name: "attention_splitkv",
  shader: "attention_splitkv",
  workgroupSize: WG,
  constants: { MAX_DPT, MAX_G },
  bindings: { tokens: "read", q: "read", k_cache: "read", v_cache: "read", part_o: "read_write", part_ml: "read_write", out: "read_write" },
  uniforms: { n_heads: "u32", n_kv: "u32", D: "u32", slot_len: "u32", scale: "f32", gw: "u32", n_chunks: "u32", chunk_len: "u32" },
});

export const SPLITKV_MERGE = defineKernel({
  name: "attention_splitkv_merge",
  shader: "attention_splitkv_merge",
  workgroupSize: WG,
  constants: { MAX_CHUNKS },
  bindings: { tokens: "read", part_o: "read", part_ml: "read", out: "read_write" },
  uniforms: { n_heads: "u32", D: "u32", n_chunks: "u32", chunk_len: "u32" },
});

/**
 * How a step's keys are chunked: as many chunks as fit (at most MAX_CHUNKS per token, at least a block of WG keys
 * each, and T * n_chunks partials per head within the scratch's `capacity`), chunk lengths a multiple of WG.
 * One chunk per token means no partials: the first pass writes the output.
 */
function splitKvChunks(T: number, maxKeys: number, capacity: number): { nChunks: number; chunkLen: number } {
  const wanted = Math.max(1, Math.min(MAX_CHUNKS, Math.ceil(maxKeys / WG), Math.floor(capacity / T)));
  const chunkLen = Math.ceil(maxKeys / wanted / WG) * WG;
  return { nChunks: Math.ceil(maxKeys / chunkLen), chunkLen };
}

type Call<D> = D extends KernelDecl<infer B, infer U> ? KernelCall<B, U> : never;

class SplitKvAttention extends Op {
  private readonly scratch: BufferSet;
  private readonly main: Call<typeof SPLITKV>;
  private readonly merge: Call<typeof SPLITKV_MERGE>;
  private readonly mainPipeline: PipelineRef;
  private readonly mergePipeline: PipelineRef;
  /** Partials per query head the scratch holds: MAX_CHUNKS for each of up to DECODE_MAX_ROWS tokens. */
  private readonly capacity: number;
  private readonly subgroups: number;

  constructor(private readonly c: AttentionContext) {
    super(c.kernels, c.label, "attention");
    const { b, dims: { nHeads, nKv, headDim: D } } = c;
    check(D % 4 === 0, `${c.label}: the splitkv attention reads head_dim ${D} as vec4s; it must be a multiple of 4`);
    const G = nHeads / nKv;
    this.subgroups = Math.ceil(G / MAX_G);
    // Even groups: 12 heads per KV head run as 2 x 6 rather than 8 + 4.
    const gw = Math.ceil(G / this.subgroups);
    this.capacity = Math.min(c.maxTokens, DECODE_MAX_ROWS) * MAX_CHUNKS;
    this.scratch = new BufferSet(c.kernels.device);
    const partials = this.capacity * nHeads;
    const part_o = this.scratch.storage(`${c.label} splitkv partial outputs`, partials * D * 4);
    const part_ml = this.scratch.storage(`${c.label} splitkv partial max and sum`, partials * 8);
    this.main = this.bind(SPLITKV, { tokens: b.tokens, q: b.q, k_cache: b.kCache, v_cache: b.vCache, part_o, part_ml, out: c.out });
    this.merge = this.bind(SPLITKV_MERGE, { tokens: b.tokens, part_o, part_ml, out: c.out }, `${c.label} merge`);
    this.main.uniforms.set({ n_heads: nHeads, n_kv: nKv, D, slot_len: b.slotLen, scale: 1 / Math.sqrt(D), gw });
    this.merge.uniforms.set({ n_heads: nHeads, D });
    this.mainPipeline = this.main.pipeline();
    this.mergePipeline = this.merge.pipeline();
  }

  encode(rec: Recorder, step: Step): void {
    check(step.T <= this.c.maxTokens && step.maxKeys <= this.c.maxKeys,
      `${this.label}: a step of ${step.T} tokens and ${step.maxKeys} keys exceeds the ${this.c.maxTokens} and ${this.c.maxKeys} it was built for`);
    const { nChunks, chunkLen } = splitKvChunks(step.T, step.maxKeys, this.capacity);
    this.main.uniforms.set({ n_chunks: nChunks, chunk_len: chunkLen });
    rec.dispatch(this.mainPipeline, this.main, nChunks, this.c.dims.nKv * this.subgroups, step.T);
    if (nChunks === 1) return;
    this.merge.uniforms.set({ n_chunks: nChunks, chunk_len: chunkLen });
    rec.dispatch(this.mergePipeline, this.merge, step.T, this.c.dims.nHeads);
  }

  cost(): Cost {
    return { flops: 0, bytes: 0 };
  }

  override destroy(): void {
    super.destroy();
    this.scratch.destroy();
  }
}

export const SPLITKV_DECODE: AttentionVariant = {
  slot: "attention.decode", name: "splitkv", precision: "f32", requires: [], maxHeadDim: WG * MAX_DPT,
  about: "flash-decoding: up to 32 chunks of each token's keys over workgroups, a workgroup per (chunk, KV head, token) " +
    "serving the whole GQA group, chunks merged by log-sum-exp",
  create: (c) => new SplitKvAttention(c),
};
