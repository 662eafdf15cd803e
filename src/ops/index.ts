// Every op of the forward pass and every load-time kernel (importing this registers all their kernel
// declarations, which the build's kernel check and the tuner list).
export { Argmax, ARGMAX, NO_FINITE_LOGIT } from "./argmax.ts";
export { Attention, ATTENTION, MAX_HEAD_DIM } from "./attention.ts";
export { CapturePoint } from "./capture.ts";
export { Embedding, EMBEDDING } from "./embedding.ts";
export { GatherRows, GATHER_ROWS } from "./gather.ts";
export { Linear, LINEAR_DECODE, LINEAR_PREFILL, LINEAR_THIN, type LinearOptions } from "./linear.ts";
export { Op, SingleKernelOp, check, sequenceStep, type Cost, type Step, type StepOp, type CaptureCopy } from "./op.ts";
export { randomFill, RANDOM_FILL, type RandomFill } from "./random-fill.ts";
export { relayout, RELAYOUT } from "./relayout.ts";
export { RmsNorm, RMSNORM } from "./rmsnorm.ts";
export { RopeKv, ROPE_KV, type AttentionBuffers, type AttentionDims } from "./rope-kv.ts";
export { SwiGlu, SWIGLU } from "./swiglu.ts";
export { widen, WIDEN } from "./widen.ts";
