// The Qwen2 decoder, top to bottom. Loading builds, once, every operation of the forward pass with its buffers and
// bind groups; running a step only writes the step's token table and records dispatches.
//
//   x = embed_tokens(ids)
//   for each layer (decoderLayer below, HF's Qwen2DecoderLayer):
//     h = input_layernorm(x);  q, k, v = q_proj(h), k_proj(h), v_proj(h)      (one stacked matrix)
//     q, k = rope(q, k);  cache[slot, pos] = k, v
//     x = x + o_proj(attention(q, cache[slot]))
//     h = post_attention_layernorm(x);  x = x + down_proj(silu(gate_proj(h)) * up_proj(h))   (gate and up stacked;
//       at decode, SwiGLU may be the projection's epilogue: the swiglu.decode slot)
//   h = norm(x);  logits = lm_head(h[output rows]);  next = argmax(logits)   (one output row per sequence; at
//     decode, the argmax's first half may be the LM head's epilogue: the lm_head.decode slot)
//
// Every token of a step carries its own (slot, position), so one step can hold the prompt of one sequence, the
// next token of several, or the prompts of several packed together (see batch.ts).
import { BufferSet } from "../gpu/buffers.ts";
import { Kernels } from "../gpu/kernel.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { ModelDir } from "../io/files.ts";
import { NO_FINITE_LOGIT } from "../ops/argmax.ts";
import { GateUpSwiGlu } from "../ops/gate-up-swiglu.ts";
import { LmHead } from "../ops/lm-head.ts";
import { Attention } from "../ops/attention.ts";
import { DEFAULT_KERNELS, resolveKernels, type KernelChoice, type ModelKernels } from "../ops/kernel-variants.ts";
import { chooseKernels, type ModelTuneOptions, type ModelTuneReport } from "../tune/choose.ts";
import type { TuneTarget } from "../tune/tuner.ts";
import { CapturePoint } from "../ops/capture.ts";
import { Embedding } from "../ops/embedding.ts";
import { GatherRows } from "../ops/gather.ts";
import { Linear, type LinearOptions } from "../ops/linear.ts";
import type { CaptureCopy, Step, StepOp } from "../ops/op.ts";
import { RmsNorm } from "../ops/rmsnorm.ts";
import { RopeKv, type AttentionBuffers, type AttentionDims } from "../ops/rope-kv.ts";
import { planSteps, type SequenceInput, type StepPlan } from "./batch.ts";
import { checkConfigAgainstTensors, type Qwen2Config } from "./config.ts";
import { asModelFolder, type ModelFolder } from "./folder.ts";
import { loadQwen2Weights, qwen2Tensors, type Projection, type Qwen2LayerWeights } from "./qwen2-weights.ts";
import { ropeTable } from "./rope.ts";
import { QUANTIZATIONS, type Quantization } from "./quant.ts";
import { openModelWeights } from "./safetensors.ts";
import { RandomWeights, SafetensorsWeights, type UploadProgress, type WeightSource } from "./weights.ts";

export interface LoadOptions {
  /** KV-cache capacity of a sequence in tokens (prompt + generated). Default: min(max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /** Sequences the model can hold at once: KV-cache slots of maxSeqLen each. Default 1. */
  maxBatch?: number;
  /** Tokens per forward step; longer prompts are prefilled in chunks. Default 256. */
  prefillChunk?: number;
  /** Largest storage binding to use; defaults to the device's limit (tests lower it to force splits). */
  maxBindingBytes?: number;
  /** Kernel variants by op slot (src/ops/kernel-variants.ts), forced: those slots are not tuned. */
  kernels?: Partial<KernelChoice>;
  /**
   * Choose the other slots' variants by measurement on this adapter at load (src/tune/tuner.ts), kept in `cache`
   * when one is given (fsTuneCache() under Node and Deno, indexedDbTuneCache() in a browser) so that the next load
   * of the same model shape on the same adapter measures nothing. Without it, the slots run static defaults for the
   * adapter's class (src/tune/defaults.ts).
   */
  tune?: boolean | ModelTuneOptions;
  /**
   * Quantize the weight matrices on the GPU while loading, in groups of 32 weights along K with an f16 scale:
   * "q8", the MLP and the LM head int8; "q4", the MLP int4 (but the first layers', int8) and the rest int8
   * (src/model/quant.ts says which and why). Default: the dtype the files store.
   */
  quant?: Quantization;
  onProgress?: (p: UploadProgress) => void;
}

/** Intermediate results a caller can ask a prefill to copy out (for golden checks and embeddings). */
export type CaptureName = "embed" | `layer${number}` | "final_norm";

export interface PrefillOptions {
  capture?: CaptureName[];
  /** Read back the logits of the last position. */
  logits?: boolean;
}

export interface PrefillResult {
  /** Greedy choice after the last prompt token (argmax on the GPU). */
  next: number;
  /** Captured tensors, each [T, hidden] row-major. */
  captured: Map<CaptureName, Float32Array>;
  logits?: Float32Array;
}

/** Tokens to append to one sequence: `ids` go to the next positions of KV-cache slot `slot`. */
export interface SequenceTokens {
  slot: number;
  ids: ArrayLike<number>;
}

export interface ForwardOptions {
  /** Run the LM head and argmax on each sequence's last token. Default true. */
  head?: boolean;
  /** Read back the logits of each sequence's last token: for all of them, or per sequence. */
  logits?: boolean | readonly boolean[];
  capture?: readonly CaptureName[];
  /** Capture every row of each sequence (default), or only its last (an embedding needs one row per text). */
  captureRows?: "all" | "last";
}

export interface SequenceResult {
  /** Greedy choice after the sequence's last token; -1 without the head. */
  next: number;
  logits?: Float32Array;
  /** Captured rows, [rows, hidden] row-major. */
  captured: Map<CaptureName, Float32Array>;
}

/** The activations of the forward pass, each sized for the largest step and bound whole. */
interface Activations {
  ids: GPUBuffer;
  /** (position, slot) per token. */
  tokens: GPUBuffer;
  /** The row of each output, and those rows of h gathered for the LM head. */
  outputRows: GPUBuffer;
  hOut: GPUBuffer;
  x: GPUBuffer;
  h: GPUBuffer;
  /** The stacked q/k/v projection's output, and q rotated out of it. */
  qkv: GPUBuffer;
  q: GPUBuffer;
  attn: GPUBuffer;
  /** The stacked gate/up projection's output, and the MLP's activation (silu(gate) * up). */
  gateUp: GPUBuffer;
  act: GPUBuffer;
  logits: GPUBuffer;
  next: GPUBuffer;
}

interface Context {
  kernels: Kernels;
  variants: ModelKernels;
  cfg: Qwen2Config;
  a: Activations;
  rope: GPUBuffer;
  slotLen: number;
  maxTokens: number;
}

const linear = (c: Context, x: GPUBuffer, p: Projection, y: GPUBuffer, opts: Omit<LinearOptions, "variants"> = {}) =>
  new Linear(c.kernels, x, p.weight, y, { variants: c.variants.linear, bias: p.bias, ...opts });

/** One Qwen2DecoderLayer: x = x + self_attn(input_layernorm(x)); x = x + mlp(post_attention_layernorm(x)). */
function decoderLayer(c: Context, l: number, w: Qwen2LayerWeights, cache: { kCache: GPUBuffer; vCache: GPUBuffer }): StepOp[] {
  const { kernels, cfg, a } = c;
  const H = cfg.hiddenSize, eps = cfg.rmsNormEps;
  const dims: AttentionDims = { nHeads: cfg.numHeads, nKv: cfg.numKvHeads, headDim: cfg.headDim };
  const kv: AttentionBuffers = { tokens: a.tokens, qkv: a.qkv, q: a.q, ...cache, slotLen: c.slotLen };
  const { self_attn: attn, mlp } = w;
  const p = `model.layers.${l}.`;
  return [
    new RmsNorm(kernels, `${p}input_layernorm`, a.x, w.input_layernorm, a.h, H, eps),
    linear(c, a.h, attn.qkv_proj, a.qkv),
    new RopeKv(kernels, `layer ${l}`, kv, c.rope, dims),
    new Attention(kernels, `layer ${l}`, kv, a.attn, dims, c.variants.attention, { maxTokens: c.maxTokens, maxKeys: c.slotLen }),
    linear(c, a.attn, attn.o_proj, a.x, { accumulate: true }),
    new RmsNorm(kernels, `${p}post_attention_layernorm`, a.x, w.post_attention_layernorm, a.h, H, eps),
    new GateUpSwiGlu(kernels, a.h, mlp.gate_up_proj.weight, a.gateUp, a.act, cfg.intermediateSize,
      { linear: c.variants.linear, decode: c.variants.swiglu.decode }),
    linear(c, a.act, mlp.down_proj, a.x, { accumulate: true }),
    new CapturePoint(`layer${l}`, a.x, H * 4),
  ];
}

/** Load options checked and filled in, with every buffer size checked against the device before any is made. */
function resolveOptions(device: GPUDevice, cfg: Qwen2Config, opts: LoadOptions) {
  const positiveInt = (name: string, v: number | undefined, fallback: number): number => {
    const n = v ?? fallback;
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
    return n;
  };
  const deviceBinding = device.limits.maxStorageBufferBindingSize;
  const maxBinding = Math.min(positiveInt("maxBindingBytes", opts.maxBindingBytes, deviceBinding), deviceBinding);
  const maxSeqLen = positiveInt("maxSeqLen", opts.maxSeqLen, Math.min(cfg.maxPositionEmbeddings, 4096));
  if (maxSeqLen > cfg.maxPositionEmbeddings) {
    throw new Error(`maxSeqLen ${maxSeqLen} exceeds the model's max_position_embeddings ${cfg.maxPositionEmbeddings}`);
  }
  const maxBatch = positiveInt("maxBatch", opts.maxBatch, 1);
  if (opts.quant !== undefined && !QUANTIZATIONS.includes(opts.quant)) {
    throw new Error(`quant must be one of ${QUANTIZATIONS.join(", ")} (or left out for the stored dtype), got ${JSON.stringify(opts.quant)}`);
  }
  const qDim = cfg.numHeads * cfg.headDim, kvDim = cfg.numKvHeads * cfg.headDim;
  // Activations are single bindings too, so the chunk is capped by the widest one (the MLP's); a decode step of
  // every sequence needs maxBatch rows.
  const widest = 4 * Math.max(2 * cfg.intermediateSize, qDim + 2 * kvDim, cfg.hiddenSize);
  const prefillChunk = Math.min(Math.max(positiveInt("prefillChunk", opts.prefillChunk, 256), maxBatch), Math.floor(maxBinding / widest));
  if (prefillChunk < maxBatch) {
    throw new Error(`maxBatch ${maxBatch}: a decode step of every sequence (${maxBatch} x ${widest} bytes of activations) exceeds the storage binding limit ${maxBinding}`);
  }
  const fits = (bytes: number, what: string) => {
    if (bytes > maxBinding) throw new Error(`${what} (${bytes} bytes) exceeds the storage binding limit ${maxBinding}`);
  };
  fits(maxBatch * maxSeqLen * kvDim * 4, `maxBatch ${maxBatch} x maxSeqLen ${maxSeqLen}: a layer's KV cache`);
  fits(maxBatch * cfg.vocabSize * 4, `vocab_size ${cfg.vocabSize} x maxBatch ${maxBatch}: the logits of a step`);
  fits(maxSeqLen * cfg.headDim * 4, `maxSeqLen ${maxSeqLen}: the rotary table`);
  return { maxBinding, maxSeqLen, maxBatch, prefillChunk };
}

/** Throws the first validation or out-of-memory error of `work` (WebGPU reports them asynchronously otherwise). */
async function withErrorScopes<T>(device: GPUDevice, what: string, work: () => Promise<T>): Promise<T> {
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = await work();
  } catch (e) {
    thrown = e;
  }
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  if (thrown !== undefined) throw thrown;
  const gpuError = validation ?? oom;
  if (gpuError) throw new Error(`${what}: the GPU reported ${oom && !validation ? "out of memory" : "a validation error"}: ${gpuError.message}`);
  return result as T;
}

export class Qwen2Model {
  /** Number of dispatches recorded by the last step (for benchmarks). */
  lastDispatches = 0;
  /** The kernel variant each op slot runs, and how it was chosen (when measured at load). */
  kernelChoice: KernelChoice = { ...DEFAULT_KERNELS };
  tuneReport: ModelTuneReport | undefined;
  /** Bytes read from files to load the weights (0 for generated ones). */
  readonly fileBytes: number;
  /** The next position of each slot's sequence. */
  private readonly positions: number[];
  /** Slot 0's greedy choice of the last step, which step() feeds by default. */
  private lastNext: number | undefined;
  private busy = false;
  // Read-back buffers, created on first use and reused, so a decode step allocates nothing.
  private nextOut?: GPUBuffer;
  private logitsOut?: GPUBuffer;

  private constructor(
    readonly config: Qwen2Config,
    readonly device: GPUDevice,
    /** Where the weights came from, for messages. */
    readonly name: string,
    readonly maxSeqLen: number,
    readonly maxBatch: number,
    readonly prefillChunk: number,
    private readonly kernels: Kernels,
    private readonly weights: BufferSet,
    private readonly buffers: BufferSet,
    private readonly a: Activations,
    private readonly body: StepOp[],
    private readonly head: StepOp[],
    fileBytes: number,
    /** How the weight matrices were quantized at load; undefined: kept in the files' dtype. */
    readonly quant: Quantization | undefined,
  ) {
    this.fileBytes = fileBytes;
    this.positions = new Array(maxBatch).fill(0);
  }

  /** Loads a Hugging Face Qwen2 model directory (config.json + safetensors). */
  static async load(device: GPUDevice, source: ModelDir | ModelFolder, opts: LoadOptions = {}): Promise<Qwen2Model> {
    const folder = await asModelFolder(source);
    const cfg = folder.config;
    const tensors = await openModelWeights(folder.dir);
    try {
      checkConfigAgainstTensors(cfg, tensors, folder.dir.name);
      const names = qwen2Tensors(cfg).map(([name]) => name);
      return await Qwen2Model.build(device, cfg, folder.dir.name, opts, (kernels, buffers, maxBinding) =>
        new SafetensorsWeights(kernels, buffers, maxBinding, tensors, folder.dir.name, names, opts.onProgress));
    } finally {
      await Promise.all([...new Set([...tensors.values()].map((t) => t.source))].map((s) => s.close()));
    }
  }

  /** A model of the given shape with seeded random BF16 weights generated on the GPU (for benchmarks). */
  static async random(device: GPUDevice, cfg: Qwen2Config, seed: number, opts: LoadOptions = {}): Promise<Qwen2Model> {
    return Qwen2Model.build(device, cfg, `random weights (seed ${seed})`, opts, (kernels, buffers, maxBinding) =>
      new RandomWeights(kernels, buffers, maxBinding, seed));
  }

  private static async build(device: GPUDevice, cfg: Qwen2Config, name: string, opts: LoadOptions,
    source: (k: Kernels, buffers: BufferSet, maxBinding: number) => WeightSource): Promise<Qwen2Model> {
    const { maxBinding, maxSeqLen, maxBatch, prefillChunk } = resolveOptions(device, cfg, opts);
    const kernels = new Kernels(device);
    const buffers = new BufferSet(device);
    const weightBuffers = new BufferSet(device);
    const ops: StepOp[] = [];
    const weightSource = source(kernels, weightBuffers, maxBinding);
    try {
      return await withErrorScopes(device, `loading ${name}`, async () => {
        const H = cfg.hiddenSize, T = prefillChunk;
        const qDim = cfg.numHeads * cfg.headDim, kvDim = cfg.numKvHeads * cfg.headDim;
        const act = (label: string, elements: number) => buffers.storage(label, elements * 4);
        const a: Activations = {
          ids: act("ids", T), tokens: act("tokens", 2 * T), outputRows: act("output rows", maxBatch), hOut: act("h of outputs", maxBatch * H),
          x: act("x", T * H), h: act("h", T * H), qkv: act("qkv", T * (qDim + 2 * kvDim)), q: act("q", T * qDim),
          attn: act("attn", T * qDim), gateUp: act("gate_up", T * 2 * cfg.intermediateSize), act: act("act", T * cfg.intermediateSize),
          logits: act("logits", maxBatch * cfg.vocabSize), next: act("next", maxBatch),
        };
        const rope = buffers.storage("rope", maxSeqLen * cfg.headDim * 4);
        device.queue.writeBuffer(rope, 0, ropeTable(cfg.headDim, cfg.ropeTheta, maxSeqLen));

        const w = await loadQwen2Weights(weightSource, cfg, opts.quant);
        const slots = maxBatch * maxSeqLen;
        const caches = w.layers.map((_, l) => ({ kCache: act(`k cache ${l}`, slots * kvDim), vCache: act(`v cache ${l}`, slots * kvDim) }));
        const target: TuneTarget = {
          kernels, cfg, weights: w, maxBatch, maxSeqLen, maxTokens: T,
          buffers: { ...a, kCaches: caches.map((c) => c.kCache), vCaches: caches.map((c) => c.vCache) },
        };
        const { choice, report } = await chooseKernels(target, opts);
        const c: Context = { kernels, variants: resolveKernels(device, choice), cfg, a, rope, slotLen: maxSeqLen, maxTokens: T };
        ops.push(new Embedding(kernels, a.ids, w.embed_tokens, a.x), new CapturePoint("embed", a.x, H * 4));
        w.layers.forEach((layer, l) => {
          ops.push(...decoderLayer(c, l, layer, caches[l]));
        });
        ops.push(new RmsNorm(kernels, "model.norm", a.x, w.norm, a.h, H, cfg.rmsNormEps), new CapturePoint("final_norm", a.h, H * 4));
        const head = [
          new GatherRows(kernels, a.h, a.outputRows, a.hOut, H),
          new LmHead(kernels, a.hOut, w.lm_head, a.logits, a.next, { linear: c.variants.linear, decode: c.variants.lmHead.decode }),
        ];
        await kernels.compiled();
        const body = ops.splice(0);
        const model = new Qwen2Model(cfg, device, name, maxSeqLen, maxBatch, prefillChunk, kernels, weightBuffers, buffers, a, body, head,
          weightSource.fileBytes, opts.quant);
        model.kernelChoice = choice;
        model.tuneReport = report;
        return model;
      });
    } catch (e) {
      weightSource.abandon();
      for (const op of ops) op.destroy();
      buffers.destroy();
      weightBuffers.destroy();
      throw e;
    }
  }

  /** Bytes of the weights on the GPU. */
  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** Bytes of every GPU buffer the model holds: weights, activations, KV cache, read-back and uniform buffers. */
  get gpuBytes(): number {
    return this.weights.bytes + this.buffers.bytes;
  }

  /** Bytes of the KV cache: every layer's keys and values for maxBatch slots of maxSeqLen positions. */
  get kvCacheBytes(): number {
    const { numLayers, numKvHeads, headDim } = this.config;
    return 2 * numLayers * this.maxBatch * this.maxSeqLen * numKvHeads * headDim * 4;
  }

  /** Every op of one forward step in order (body, then LM head and argmax), for profilers and benchmarks. */
  get ops(): readonly StepOp[] {
    return [...this.body, ...this.head];
  }

  /** Tokens already in slot 0's KV cache; its next token goes at this position. */
  get position(): number {
    return this.positions[0];
  }

  /** Tokens already in the KV cache of `slot`. */
  positionOf(slot: number): number {
    this.checkSlot(slot, "positionOf");
    return this.positions[slot];
  }

  /** Empties slot 0's KV cache (the next prefill starts at position 0). */
  reset(): void {
    this.resetSlot(0);
  }

  /** Empties one slot's KV cache, for a new sequence there. */
  resetSlot(slot: number): void {
    this.checkSlot(slot, "resetSlot");
    this.positions[slot] = 0;
    if (slot === 0) this.lastNext = undefined;
  }

  /** Frees every GPU buffer of the model; it is unusable afterwards. */
  destroy(): void {
    for (const op of this.ops) op.destroy();
    this.buffers.destroy();
    this.weights.destroy();
  }

  private checkSlot(slot: number, what: string): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.maxBatch) {
      throw new Error(`${what}: slot ${slot} is not one of the model's ${this.maxBatch} KV-cache slots (0..${this.maxBatch - 1}; raise maxBatch)`);
    }
  }

  private checkIds(ids: ArrayLike<number>, what: string): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new Error(`${what}: token id ${id} at index ${i} is out of range: the vocabulary has ${this.config.vocabSize} ids (0..${this.config.vocabSize - 1})`);
      }
    }
  }

  private checkCaptures(names: readonly string[]): void {
    const known = new Set(this.body.filter((op) => op instanceof CapturePoint).map((op) => op.label));
    for (const name of names) {
      if (!known.has(name)) {
        throw new Error(`capture "${name}": not a point of this model (embed, layer0..layer${this.config.numLayers - 1}, final_norm)`);
      }
    }
  }

  /** Runs `work` alone: a second call while one runs would interleave with it on the GPU and in the KV cache. */
  private async exclusive<T>(what: string, work: () => Promise<T>): Promise<T> {
    if (this.busy) {
      throw new Error(`${what}: another forward pass is running on this model; await it first (or batch the sequences into one call)`);
    }
    this.busy = true;
    try {
      return await work();
    } finally {
      this.busy = false;
    }
  }

  /**
   * Appends tokens to several sequences at once, each in its own KV-cache slot, packed into steps of at most
   * prefillChunk tokens with no padding: the prompts of new sequences, the next token of running ones, or both.
   * Returns, per sequence in order, the greedy choice after its last token (and its logits, and captured rows, when
   * asked). Every sequence is checked before anything runs: one that would outgrow its slot is refused by name.
   */
  forward(sequences: readonly SequenceTokens[], opts: ForwardOptions = {}): Promise<SequenceResult[]> {
    return this.exclusive("forward", () => this.forwardNow(sequences, opts));
  }

  private async forwardNow(sequences: readonly SequenceTokens[], opts: ForwardOptions): Promise<SequenceResult[]> {
    const head = opts.head ?? true;
    const wantLogits = sequences.map((_, i) => (Array.isArray(opts.logits) ? opts.logits[i] : opts.logits) === true);
    if (!head && wantLogits.some(Boolean)) throw new Error("forward: logits need the head (head: false was given)");
    const captureNames = opts.capture ?? [];
    this.checkCaptures(captureNames);
    if (sequences.length === 0) throw new Error("forward: no sequences");
    const seen = new Set<number>();
    sequences.forEach((seq, i) => {
      const what = `sequence ${i}`;
      this.checkSlot(seq.slot, what);
      if (seen.has(seq.slot)) throw new Error(`${what}: slot ${seq.slot} is given twice (one sequence per slot)`);
      seen.add(seq.slot);
      if (seq.ids.length === 0) throw new Error(`${what}: no token ids`);
      this.checkIds(seq.ids, what);
      const at = this.positions[seq.slot];
      if (at + seq.ids.length > this.maxSeqLen) {
        throw new Error(`${what} (slot ${seq.slot}): ${seq.ids.length} new tokens at position ${at} exceed the KV cache of ${this.maxSeqLen} ` +
          `positions (raise maxSeqLen, up to max_position_embeddings ${this.config.maxPositionEmbeddings})`);
      }
    });

    // Captured rows of sequence i start at rowBase[i]: all of its rows, or only its last.
    const allRows = (opts.captureRows ?? "all") === "all";
    const rowBase: number[] = [];
    let captureRows = 0;
    for (const seq of sequences) {
      rowBase.push(captureRows);
      captureRows += allRows ? seq.ids.length : 1;
    }
    const rowBytes = this.config.hiddenSize * 4;
    const captures = new Map(captureNames.map((name) => [name, this.device.createBuffer({
      label: `capture ${name}`, size: captureRows * rowBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    })]));
    const inputs = sequences.map((seq) => ({ slot: seq.slot, start: this.positions[seq.slot], ids: seq.ids }));
    const results: SequenceResult[] = sequences.map(() => ({ next: -1, captured: new Map() }));
    try {
      for (const plan of planSteps(inputs, this.prefillChunk)) {
        const ranges = plan.spans.flatMap((s) => {
          if (allRows) return [{ srcRow: s.row0, dstRow: rowBase[s.sequence] + s.offset, rows: s.rows }];
          const ends = s.offset + s.rows === sequences[s.sequence].ids.length;
          return ends ? [{ srcRow: s.row0 + s.rows - 1, dstRow: rowBase[s.sequence], rows: 1 }] : [];
        });
        const capture = new Map<string, CaptureCopy>([...captures].map(([name, buffer]) => [name, { buffer, ranges }]));
        const withHead = head && plan.step.outputs > 0;
        const out = await this.run(plan, { head: withHead, logitsFor: plan.outputSequences.map((s) => wantLogits[s]), capture });
        plan.outputSequences.forEach((s, r) => {
          results[s].next = withHead ? out.next[r] : -1;
          if (out.logits[r]) results[s].logits = out.logits[r];
        });
        for (const span of plan.spans) this.positions[sequences[span.sequence].slot] += span.rows;
      }
      for (const [name, buf] of captures) {
        await buf.mapAsync(GPUMapMode.READ);
        const all = new Float32Array(buf.getMappedRange().slice(0));
        sequences.forEach((seq, i) => {
          const rows = allRows ? seq.ids.length : 1;
          results[i].captured.set(name, all.slice(rowBase[i] * this.config.hiddenSize, (rowBase[i] + rows) * this.config.hiddenSize));
        });
      }
      return results;
    } finally {
      for (const buf of captures.values()) buf.destroy();
    }
  }

  /** Runs the prompt through slot 0 (appending to its KV cache) and returns the greedy next token. */
  async prefill(ids: ArrayLike<number>, opts: PrefillOptions = {}): Promise<PrefillResult> {
    if (ids.length === 0) throw new Error("prefill: empty prompt (no token ids)");
    const [r] = await this.forward([{ slot: 0, ids }], { capture: opts.capture, logits: opts.logits });
    this.lastNext = r.next;
    return { next: r.next, captured: r.captured as Map<CaptureName, Float32Array>, logits: r.logits };
  }

  /** One decode step of slot 0: feeds `token` (default: the previous greedy choice) and returns the next greedy token. */
  async step(token?: number): Promise<number> {
    return (await this.stepWithLogits(token, false)).next;
  }

  /** A decode step that can also read back the logits (for sampling, which needs the distribution). */
  async stepWithLogits(token: number | undefined, logits: boolean): Promise<{ next: number; logits?: Float32Array }> {
    const id = token ?? this.lastNext;
    if (id === undefined) throw new Error("step: no token given and no previous step to continue from (prefill first)");
    const [r] = await this.forward([{ slot: 0, ids: [id] }], { logits });
    this.lastNext = r.next;
    return { next: r.next, logits: r.logits };
  }

  /** Greedy decoding: prefill, then up to maxNewTokens steps, stopping after an EOS id. */
  async generateGreedy(ids: ArrayLike<number>, maxNewTokens: number, stopIds = this.config.eosTokenIds): Promise<number[]> {
    const out: number[] = [];
    if (maxNewTokens <= 0) return out;
    let next = (await this.prefill(ids)).next;
    for (;;) {
      out.push(next);
      if (out.length >= maxNewTokens || stopIds.includes(next)) return out;
      next = await this.step();
    }
  }

  /**
   * Writes the token table of one sequence's step of T tokens at positions pos0.. (token id 0) and returns the
   * step, for profilers that encode the ops one by one. The KV cache rows it touches are overwritten.
   */
  stageStep(T: number, pos0: number): Step {
    if (!(Number.isSafeInteger(T) && T >= 1 && T <= this.prefillChunk)) throw new Error(`stageStep: T ${T} must be in 1..${this.prefillChunk}`);
    if (!(Number.isSafeInteger(pos0) && pos0 >= 0 && pos0 + T <= this.maxSeqLen)) throw new Error(`stageStep: positions ${pos0}..${pos0 + T - 1} are outside the KV cache of ${this.maxSeqLen}`);
    const [plan] = planSteps([{ slot: 0, start: pos0, ids: new Uint32Array(T) }], T);
    this.writeTables(plan, true);
    return plan.step;
  }

  private writeTables(plan: StepPlan, head: boolean): void {
    const { queue } = this.device;
    queue.writeBuffer(this.a.ids, 0, plan.ids);
    queue.writeBuffer(this.a.tokens, 0, plan.tokens);
    if (head) queue.writeBuffer(this.a.outputRows, 0, plan.outputRows);
  }

  /**
   * Records and submits one step; with `head`, also the LM head and argmax over the step's output rows, and waits
   * for their ids (and the logits of the outputs that ask for them). A step without a head is waited for too, which
   * bounds the work queued at once.
   */
  private async run(plan: StepPlan, opts: { head: boolean; logitsFor: boolean[]; capture: ReadonlyMap<string, CaptureCopy> }) {
    const { device, a } = this;
    const wanted = opts.logitsFor.flatMap((want, r) => (want ? [r] : []));
    const step = { ...plan.step, capture: opts.capture, logits: wanted.length > 0 };
    const S = plan.step.outputs;
    const V = this.config.vocabSize;
    return withErrorScopes(device, `forward step on ${this.name}`, async () => {
      this.writeTables(plan, opts.head);
      const rec = new Recorder(device);
      for (const op of this.body) op.encode(rec, step);
      if (!opts.head) {
        rec.submit();
        this.lastDispatches = rec.dispatches;
        await device.queue.onSubmittedWorkDone();
        return { next: new Uint32Array(0), logits: [] as (Float32Array | undefined)[] };
      }
      for (const op of this.head) op.encode(rec, step);
      const nextOut = (this.nextOut ??= this.buffers.readback("next readback", this.maxBatch * 4));
      rec.copy(a.next, 0, nextOut, 0, S * 4);
      // Only the rows that are asked for leave the GPU (a logits row is 600 KB for Qwen2.5's vocabulary).
      const logitsOut = wanted.length > 0 ? (this.logitsOut ??= this.buffers.readback("logits readback", this.maxBatch * V * 4)) : undefined;
      wanted.forEach((r, i) => rec.copy(a.logits, r * V * 4, logitsOut!, i * V * 4, V * 4));
      rec.submit();
      this.lastDispatches = rec.dispatches;
      await nextOut.mapAsync(GPUMapMode.READ);
      const next = new Uint32Array(nextOut.getMappedRange().slice(0, S * 4));
      nextOut.unmap();
      const logits: (Float32Array | undefined)[] = new Array(S);
      if (logitsOut) {
        await logitsOut.mapAsync(GPUMapMode.READ);
        const all = logitsOut.getMappedRange();
        wanted.forEach((r, i) => { logits[r] = new Float32Array(all.slice(i * V * 4, (i + 1) * V * 4)); });
        logitsOut.unmap();
      }
      const bad = next.indexOf(NO_FINITE_LOGIT);
      if (bad >= 0) {
        throw new Error(`${this.name}: the forward pass gave no finite logit (all NaN or infinite) for output row ${bad}: ` +
          "the weights or the activations hold NaN or infinity");
      }
      return { next, logits };
    });
  }
}
