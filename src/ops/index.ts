// Every op of the forward pass and every load-time kernel (importing this registers all their kernel
// declarations, which the build's kernel check and the tuner list).
export { Argmax, ARGMAX, ARGMAX_PARTIALS, NO_FINITE_LOGIT } from "./argmax.ts";
export { Attention, type AttentionVariant, type AttentionContext } from "./attention.ts";
export { ATTENTION, MAX_HEAD_DIM, ONLINE_DECODE, ONLINE_PREFILL } from "./attention-online.ts";
export { CapturePoint } from "./capture.ts";
export { Embedding, EMBEDDING } from "./embedding.ts";
export { GateUpSwiGlu, SEPARATE_SWIGLU, SPLITK_SUBGROUP_SWIGLU, SPLITK_SWIGLU, type SwiGluVariant } from "./gate-up-swiglu.ts";
export { GatherRows, GATHER_ROWS } from "./gather.ts";
export { LmHead, SEPARATE_LM_HEAD, SPLITK_ARGMAX, SPLITK_SUBGROUP_ARGMAX, type LmHeadVariant } from "./lm-head.ts";
export { Linear, LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearOptions, type LinearVariant, type LinearKernel } from "./linear.ts";
export { LINEAR_ROWS, ROWS_DECODE, ROWS_PREFILL } from "./linear-rows.ts";
export {
  allVariants, ATTENTION_VARIANTS, DEFAULT_KERNELS, LINEAR_VARIANTS, parseKernelList, resolveKernels, supportedVariants, SWIGLU_VARIANTS, LM_HEAD_VARIANTS,
  type KernelChoice, type ModelKernels,
} from "./kernel-variants.ts";
export { DECODE_MAX_ROWS, isSupported, OP_SLOTS, pickVariant, type OpSlot, type Precision, type VariantInfo } from "./variant.ts";
export { Op, SingleKernelOp, check, sequenceStep, type Cost, type Step, type StepOp, type CaptureCopy } from "./op.ts";
export { randomFill, RANDOM_FILL, type RandomFill } from "./random-fill.ts";
export { quantize, QUANTIZE } from "./quantize.ts";
export { relayout, RELAYOUT } from "./relayout.ts";
export { RmsNorm, RMSNORM } from "./rmsnorm.ts";
export { RopeKv, ROPE_KV, type AttentionBuffers, type AttentionDims } from "./rope-kv.ts";
export { SwiGlu, SWIGLU } from "./swiglu.ts";
export { widen, WIDEN } from "./widen.ts";
