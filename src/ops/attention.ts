// Grouped-query causal attention of each token against its own sequence's KV cache (online softmax).
import { defineKernel, type Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { check, SingleKernelOp, type Cost, type Step } from "./op.ts";
import type { AttentionBuffers, AttentionDims } from "./rope-kv.ts";

/** Output dims per invocation: head_dim <= WG * MAX_DPT. */
const MAX_DPT = 4;

export const ATTENTION = defineKernel({
  name: "attention",
  shader: "attention",
  workgroupSize: 64,
  constants: { MAX_DPT },
  bindings: { tokens: "read", q: "read", k_cache: "read", v_cache: "read", out: "read_write" },
  uniforms: { T: "u32", n_heads: "u32", n_kv: "u32", D: "u32", slot_len: "u32", scale: "f32" },
});

/** The largest head_dim the attention kernel serves. */
export const MAX_HEAD_DIM = ATTENTION.workgroupSize * MAX_DPT;

export class Attention extends SingleKernelOp<typeof ATTENTION> {
  constructor(kernels: Kernels, name: string, b: Omit<AttentionBuffers, "k" | "v">, out: GPUBuffer, private readonly d: AttentionDims) {
    check(d.headDim <= MAX_HEAD_DIM, `head_dim ${d.headDim} is larger than the attention kernel's ${MAX_HEAD_DIM}`);
    check(d.nHeads % d.nKv === 0, `num_attention_heads ${d.nHeads} is not a multiple of num_key_value_heads ${d.nKv}`);
    super(kernels, `attention ${name}`, "attention", ATTENTION, { tokens: b.tokens, q: b.q, k_cache: b.kCache, v_cache: b.vCache, out });
    this.call.uniforms.set({ n_heads: d.nHeads, n_kv: d.nKv, D: d.headDim, slot_len: b.slotLen, scale: 1 / Math.sqrt(d.headDim) });
  }

  encode(rec: Recorder, step: Step): void {
    this.call.uniforms.set({ T: step.T });
    rec.dispatch(this.pipeline, this.call, step.T, this.d.nHeads);
  }

  cost(step: Step): Cost {
    const { nHeads, nKv, headDim } = this.d;
    // Each KV head's cache is read once per query position (its query heads share it through the cache).
    return { flops: 4 * nHeads * step.keys * headDim, bytes: 2 * nKv * step.keys * headDim * 4 + 2 * step.T * nHeads * headDim * 4 };
  }
}
