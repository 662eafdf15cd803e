// Today's attention kernel (shaders/attention.wgsl), the "online" variant of both slots: one workgroup per (token,
// query head) walks that token's keys in blocks of WG with an online softmax.
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { AttentionContext, AttentionVariant } from "./attention.ts";
import { SingleKernelOp, type Cost, type Step } from "./op.ts";

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

class OnlineAttention extends SingleKernelOp<typeof ATTENTION> {
  constructor(private readonly c: AttentionContext, kernel: typeof ATTENTION) {
    const { b, dims: d } = c;
    super(c.kernels, c.label, "attention", kernel, { tokens: b.tokens, q: b.q, k_cache: b.kCache, v_cache: b.vCache, out: c.out });
    this.call.uniforms.set({ n_heads: d.nHeads, n_kv: d.nKv, D: d.headDim, slot_len: b.slotLen, scale: 1 / Math.sqrt(d.headDim) });
  }

  encode(rec: Recorder, step: Step): void {
    this.call.uniforms.set({ T: step.T });
    rec.dispatch(this.pipeline, this.call, step.T, this.c.dims.nHeads);
  }

  cost(): Cost {
    return { flops: 0, bytes: 0 };
  }
}

/** A variant dispatched as the online kernel is (a user's kernel of the same contract too: see user-kernel.ts). */
export function onlineVariant(slot: AttentionVariant["slot"], name: string, about: string, kernel = ATTENTION): AttentionVariant {
  return { slot, name, precision: "f32", requires: [], maxHeadDim: MAX_HEAD_DIM, about, create: (c) => new OnlineAttention(c, kernel) };
}

const ABOUT = "a workgroup per (token, query head) over all of the token's keys, online softmax in blocks of 64";
export const ONLINE_DECODE = onlineVariant("attention.decode", "online", ABOUT);
export const ONLINE_PREFILL = onlineVariant("attention.prefill", "online", ABOUT);
