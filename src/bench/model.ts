// The model side of the benchmark: opening a shape (a published Qwen2.5 shape with seeded random BF16
// weights generated on the GPU, or a model folder), timing its kernels one by one at a given step,
// and timing prefill and decode end to end through the model's own API.
import { nodeModelDir } from "../io/node.ts";
import { Recorder } from "../gpu/recorder.ts";
import { sequenceStep, type StepOp } from "../ops/op.ts";
import type { Qwen2Config } from "../model/config.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { isQwen25Shape, QWEN25_SHAPES } from "../model/shapes.ts";
import type { UploadProgress } from "../model/weights.ts";
import { mulberry32 } from "../util/prng.ts";
import { median, type GpuTimer, type MeasureOptions } from "../gpu/timer.ts";

/** The seed of the random-weight shapes (the same as `r3gpu export-gguf --shape`'s default). */
export const RANDOM_SEED = 1;

export interface LoadFigures {
  /** "random": generated on the GPU from RANDOM_SEED; "files": read from the model folder. */
  source: "random" | "files";
  seconds: number;
  weight_bytes: number;
  /** Bytes read from safetensors files, and that over the load time (files only). */
  file_bytes?: number;
  file_gbps?: number;
}

/** Opens `shape` (a key of QWEN25_SHAPES or a model folder) with room for maxSeqLen tokens, timing the load (and the quantization, if asked). */
export async function openModel(device: GPUDevice, shape: string, maxSeqLen: number,
  onProgress?: (p: UploadProgress) => void, maxBatch = 1, kernels: Pick<LoadOptions, "kernels" | "tune" | "quant"> = {}): Promise<{ model: Qwen2Model; load: LoadFigures }> {
  const t0 = performance.now();
  if (isQwen25Shape(shape)) {
    const model = await Qwen2Model.random(device, QWEN25_SHAPES[shape], RANDOM_SEED, { maxSeqLen, maxBatch, ...kernels });
    return { model, load: { source: "random", seconds: (performance.now() - t0) / 1000, weight_bytes: model.weightBytes } };
  }
  const model = await Qwen2Model.load(device, nodeModelDir(shape), { maxSeqLen, maxBatch, onProgress, ...kernels });
  const seconds = (performance.now() - t0) / 1000;
  return {
    model,
    load: { source: "files", seconds, weight_bytes: model.weightBytes, file_bytes: model.fileBytes, file_gbps: model.fileBytes / seconds / 1e9 },
  };
}

export interface KernelRow {
  /** The op's label with its layer index left out (every layer runs the same kernels at the same shapes). */
  name: string;
  family: string;
  /** Times the op runs per step (once per layer for layer ops). */
  calls: number;
  dispatches_per_call: number;
  /** Device seconds of one call: the median time of all `calls` back to back, divided by calls. */
  seconds: number;
  /** The op's compulsory work per call (Op.cost) and the rates it reached. */
  flops: number;
  bytes: number;
  gflops: number;
  gbps: number;
}

/** A step of T tokens of one sequence at positions pos0.., as the bench profiles it. */
export interface StepShape {
  T: number;
  pos0: number;
}

export interface StepProfile {
  step: StepShape;
  rows: KernelRow[];
  /** Sum over rows of calls x seconds: the step's device time with every kernel run in isolation. */
  kernel_seconds: number;
  families: Record<string, { seconds: number; share: number }>;
}

function kernelName(label: string): string {
  return label.replace(/model\.layers\.\d+\./, "").replace(/ layer \d+$/, "").replace(/\.weight$/, "");
}

/**
 * Times every distinct op of a forward step at `step`. Ops that differ only by layer share one row with
 * a call count, and are timed together, layer after layer as in the model: each layer's weights and KV
 * cache are its own buffers, so the timing reads them from where a real step would (repeating one
 * layer's op would time a matrix sitting in cache). Ops that record no dispatch are left out.
 */
export async function profileStep(model: Qwen2Model, shape: StepShape, timer: GpuTimer, opts: MeasureOptions): Promise<StepProfile> {
  const step = model.stageStep(shape.T, shape.pos0);
  const groups = new Map<string, { ops: StepOp[]; dispatches: number }>();
  for (const op of model.ops) {
    const cost = op.cost(step);
    const key = `${op.family} ${op.label.replace(/\d+/g, "#")} ${cost.flops} ${cost.bytes}`;
    const group = groups.get(key);
    if (group) {
      group.ops.push(op);
      continue;
    }
    const dry = new Recorder(model.device);
    op.encode(dry, step);
    if (dry.dispatches > 0) groups.set(key, { ops: [op], dispatches: dry.dispatches });
  }
  const rows: KernelRow[] = [];
  for (const { ops, dispatches } of groups.values()) {
    const pass = await timer.measure((rec) => { for (const op of ops) op.encode(rec, step); }, opts);
    const seconds = pass.seconds / ops.length;
    const { flops, bytes } = ops[0].cost(step);
    rows.push({ name: kernelName(ops[0].label), family: ops[0].family, calls: ops.length, dispatches_per_call: dispatches, seconds,
      flops, bytes, gflops: flops / seconds / 1e9, gbps: bytes / seconds / 1e9 });
  }
  const kernel_seconds = rows.reduce((s, r) => s + r.calls * r.seconds, 0);
  const families: StepProfile["families"] = {};
  for (const r of rows) {
    const f = (families[r.family] ??= { seconds: 0, share: 0 });
    f.seconds += r.calls * r.seconds;
    f.share = f.seconds / kernel_seconds;
  }
  return { step: shape, rows, kernel_seconds, families };
}

/** A fixed prompt of valid ids spread over the vocabulary (content does not change the work done). */
export function promptIds(tokens: number, cfg: Qwen2Config): number[] {
  return Array.from({ length: tokens }, (_, i) => (i * 7919 + 13) % cfg.vocabSize);
}

/** Work of the forward pass over `step` summed over its ops (Op.cost). */
export function stepCost(model: Qwen2Model, shape: StepShape): { flops: number; bytes: number } {
  let flops = 0, bytes = 0;
  const step = sequenceStep(shape.T, shape.pos0);
  for (const op of model.ops) {
    const c = op.cost(step);
    flops += c.flops;
    bytes += c.bytes;
  }
  return { flops, bytes };
}

export interface PrefillFigures {
  tokens: number;
  /** Median wall time of model.prefill from an empty cache: the prompt, its chunks and the first token's read-back. */
  ttft_s: number;
  tok_s: number;
  /**
   * Achieved arithmetic rate. The prompt's flops are those of one step over all its tokens: chunking
   * does not change them (the LM head runs once, on the last chunk).
   */
  gflops: number;
  runs: number;
}

/**
 * Prefills a prompt of `tokens` from position 0, `runs` times. There is no warm-up run: the benchmark
 * profiles the kernels at the same shapes first, which touches every buffer and pipeline involved.
 */
export async function measurePrefill(model: Qwen2Model, tokens: number, runs: number): Promise<PrefillFigures> {
  const ids = promptIds(tokens, model.config);
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    model.reset();
    const t0 = performance.now();
    await model.prefill(ids);
    samples.push((performance.now() - t0) / 1000);
  }
  const ttft_s = median(samples);
  return { tokens, ttft_s, tok_s: tokens / ttft_s, gflops: stepCost(model, { T: tokens, pos0: 0 }).flops / ttft_s / 1e9, runs };
}

export interface DecodeFigures {
  /** Tokens in the KV cache before the first timed step. */
  context: number;
  steps: number;
  /** Median wall time of one model.step (which includes reading back the token id). */
  s_per_token: number;
  tok_s: number;
  /** The first timed step's compulsory bytes (Op.cost: weights, KV cache, activations) and dispatches. */
  bytes_per_token: number;
  dispatches_per_token: number;
}

/** Decodes `steps` tokens from the model's current position (after a prefill; see measurePrefill on warm-up). */
export async function measureDecode(model: Qwen2Model, steps: number): Promise<DecodeFigures> {
  const context = model.position;
  const samples: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await model.step();
    samples.push((performance.now() - t0) / 1000);
  }
  const s_per_token = median(samples);
  return {
    context, steps, s_per_token, tok_s: 1 / s_per_token,
    bytes_per_token: stepCost(model, { T: 1, pos0: context }).bytes,
    dispatches_per_token: model.lastDispatches,
  };
}

export interface BatchedDecodeFigures {
  batch: number;
  /** Tokens in each sequence's KV cache before the first timed step. */
  context: number;
  steps: number;
  /** Median wall time of one step of every sequence together. */
  s_per_step: number;
  /** Aggregate: tokens of all sequences per second. */
  tok_s: number;
}

/** B sequences of `context` tokens prefilled together, then `steps` decode steps of all of them at once. */
export async function measureBatchedDecode(model: Qwen2Model, batch: number, context: number, steps: number): Promise<BatchedDecodeFigures> {
  const slots = [...Array(batch).keys()];
  for (const s of slots) model.resetSlot(s);
  const ids = promptIds(context, model.config);
  let next = (await model.forward(slots.map((slot) => ({ slot, ids })))).map((r) => r.next);
  const samples: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    next = (await model.forward(slots.map((slot) => ({ slot, ids: [next[slot]] })))).map((r) => r.next);
    samples.push((performance.now() - t0) / 1000);
  }
  const s_per_step = median(samples);
  return { batch, context, steps, s_per_step, tok_s: batch / s_per_step };
}

export interface PackedPrefillFigures {
  documents: number;
  tokens: number;
  /** Prompt tokens per second with every document in one packed forward call, and with one call per document. */
  packed_tok_s: number;
  one_at_a_time_tok_s: number;
}

/**
 * `documents` prompts of about `length` tokens each (ragged: length ± 20%, seeded), embedded as SearchR3.encode
 * does (final-norm row of each, no LM head): all in one packed forward call against one call per document.
 */
export async function measurePackedPrefill(model: Qwen2Model, documents: number, length: number, runs: number): Promise<PackedPrefillFigures> {
  const random = mulberry32(documents * 1000 + length);
  const docs = Array.from({ length: documents }, () => promptIds(Math.round(length * (0.8 + 0.4 * random())), model.config));
  const tokens = docs.reduce((n, d) => n + d.length, 0);
  const opts = { head: false, capture: ["final_norm" as const], captureRows: "last" as const };
  const packed: number[] = [];
  const single: number[] = [];
  for (let r = 0; r < runs; r++) {
    docs.forEach((_, s) => model.resetSlot(s));
    let t0 = performance.now();
    await model.forward(docs.map((ids, slot) => ({ slot, ids })), opts);
    packed.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    for (const ids of docs) {
      model.resetSlot(0);
      await model.forward([{ slot: 0, ids }], opts);
    }
    single.push((performance.now() - t0) / 1000);
  }
  return { documents, tokens, packed_tok_s: tokens / median(packed), one_at_a_time_tok_s: tokens / median(single) };
}
