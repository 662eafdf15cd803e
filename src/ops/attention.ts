// Grouped-query causal attention of each token against its own sequence's KV cache. The op holds one variant for
// decode steps (up to DECODE_MAX_ROWS tokens) and one for longer ones (see src/ops/kernel-variants.ts).
import type { Kernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { check, type Cost, type Step, type StepOp } from "./op.ts";
import type { AttentionBuffers, AttentionDims } from "./rope-kv.ts";
import { DECODE_MAX_ROWS, type VariantInfo } from "./variant.ts";

/** What a variant is built over. */
export interface AttentionContext {
  kernels: Kernels;
  label: string;
  b: Omit<AttentionBuffers, "qkv">;
  out: GPUBuffer;
  dims: AttentionDims;
  /** The most tokens a step holds, and the longest context a token can have (for scratch buffers). */
  maxTokens: number;
  maxKeys: number;
}

export interface AttentionVariant extends VariantInfo {
  slot: "attention.decode" | "attention.prefill";
  /** The largest head_dim it serves. */
  maxHeadDim: number;
  /** The variant bound over the layer's buffers; an op of its own (its cost is the Attention op's). */
  create(c: AttentionContext): StepOp;
}

export class Attention implements StepOp {
  readonly label: string;
  readonly family = "attention";
  private readonly impls: StepOp[];

  constructor(kernels: Kernels, name: string, b: Omit<AttentionBuffers, "qkv">, out: GPUBuffer, private readonly d: AttentionDims,
    variants: { decode: AttentionVariant; prefill: AttentionVariant }, limits: { maxTokens: number; maxKeys: number }) {
    check(d.nHeads % d.nKv === 0, `num_attention_heads ${d.nHeads} is not a multiple of num_key_value_heads ${d.nKv}`);
    for (const v of [variants.decode, variants.prefill]) {
      check(d.headDim <= v.maxHeadDim, `head_dim ${d.headDim} is larger than the ${v.slot} kernel ${v.name}'s ${v.maxHeadDim}`);
    }
    this.label = `attention ${name}`;
    const c: AttentionContext = { kernels, label: this.label, b, out, dims: d, ...limits };
    this.impls = [variants.decode.create(c), variants.prefill.create(c)];
  }

  encode(rec: Recorder, step: Step): void {
    this.impls[step.T <= DECODE_MAX_ROWS ? 0 : 1].encode(rec, step);
  }

  cost(step: Step): Cost {
    const { nHeads, nKv, headDim } = this.d;
    // Each KV head's cache is read once per query position (its query heads share it through the cache).
    return { flops: 4 * nHeads * step.keys * headDim, bytes: 2 * nKv * step.keys * headDim * 4 + 2 * step.T * nHeads * headDim * 4 };
  }

  destroy(): void {
    for (const impl of this.impls) impl.destroy();
  }
}
