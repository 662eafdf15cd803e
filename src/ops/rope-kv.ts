// Rotary position embedding on q (in place) and k, and the KV-cache write of k and v, each token at its own
// (slot, position) from the model's token table.
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

export const ROPE_KV = defineKernel({
  name: "rope_kv",
  shader: "rope_kv",
  workgroupSize: 64,
  bindings: { tokens: "read", q: "read_write", k: "read", v: "read", rope: "read", k_cache: "read_write", v_cache: "read_write" },
  uniforms: { T: "u32", n_heads: "u32", n_kv: "u32", D: "u32", slot_len: "u32" },
});

export interface AttentionDims {
  nHeads: number;
  nKv: number;
  headDim: number;
}

/** The buffers of one layer's attention: the token table, q/k/v, and the layer's KV cache. */
export interface AttentionBuffers {
  tokens: GPUBuffer;
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** Cache rows per sequence slot (the model's maxSeqLen). */
  slotLen: number;
}

export class RopeKv extends SingleKernelOp<typeof ROPE_KV> {
  constructor(kernels: Kernels, name: string, b: AttentionBuffers, rope: GPUBuffer, private readonly d: AttentionDims) {
    super(kernels, `rope+kv ${name}`, "rope_kv", ROPE_KV, { tokens: b.tokens, q: b.q, k: b.k, v: b.v, rope, k_cache: b.kCache, v_cache: b.vCache });
    this.call.uniforms.set({ n_heads: d.nHeads, n_kv: d.nKv, D: d.headDim, slot_len: b.slotLen });
  }

  encode(rec: Recorder, step: Step): void {
    this.call.uniforms.set({ T: step.T });
    rec.dispatch(this.pipeline, this.call, Math.ceil(this.d.headDim / 2 / ROPE_KV.workgroupSize), this.d.nHeads + this.d.nKv, step.T);
  }

  cost(step: Step): Cost {
    const { nHeads, nKv, headDim } = this.d;
    return { flops: 3 * step.T * (nHeads + nKv) * headDim, bytes: step.T * ((nHeads + nKv) * headDim * 12 + nKv * headDim * 8) };
  }
}
