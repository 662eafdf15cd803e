// The Qwen2 decoder, top to bottom. Loading builds, once, every operation of the forward pass with
// its buffers and bind groups; running a step only fills in (T, position) and records dispatches.
//
//   x = embed(ids)
//   for each layer:
//     h = rmsnorm(x);  q, k, v = h Wq + bq, h Wk + bk, h Wv + bv
//     q, k = rope(q, k); cache[pos] = k, v
//     x = x + attention(q, cache) Wo
//     h = rmsnorm(x);  x = x + (silu(h Wgate) * (h Wup)) Wdown
//   logits = rmsnorm(x)[last] Wlm;  next = argmax(logits)
import type { ModelDir } from "../io/files.ts";
import { Kernels, Recorder } from "../gpu/kernels.ts";
import {
  activation, Argmax, Attention, Embedding, Linear, RmsNorm, RopeKv, SwiGlu,
  type Cost, type GpuMatrix, type Op, type Step,
} from "../gpu/ops.ts";
import { checkConfigAgainstTensors, loadConfig, type Qwen2Config } from "./config.ts";
import { ropeTable } from "./rope.ts";
import { openModelWeights } from "./safetensors.ts";
import { RandomWeights, SafetensorsWeights, type UploadProgress, type WeightSource } from "./weights.ts";

export interface LoadOptions {
  /** KV-cache capacity in tokens (prompt + generated). Default: min(max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /** Tokens per prefill submission; longer prompts are prefilled in chunks. Default 256. */
  prefillChunk?: number;
  /** Largest storage binding to use; defaults to the device's limit (tests lower it to force splits). */
  maxBindingBytes?: number;
  onProgress?: (p: UploadProgress) => void;
}

function bindingLimit(device: GPUDevice, opts: LoadOptions): number {
  return Math.min(opts.maxBindingBytes ?? Infinity, device.limits.maxStorageBufferBindingSize);
}

/** Every tensor a Qwen2 checkpoint must provide for this config. */
function weightNames(cfg: Qwen2Config): string[] {
  return [
    "model.embed_tokens.weight", "model.norm.weight",
    ...(cfg.tieWordEmbeddings ? [] : ["lm_head.weight"]),
    ...Array.from({ length: cfg.numLayers }, (_, l) => [
      "input_layernorm.weight", "post_attention_layernorm.weight",
      "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
      "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
      "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    ].map((n) => `model.layers.${l}.${n}`)).flat(),
  ];
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

interface Capture {
  buffers: Map<CaptureName, GPUBuffer>;
  rowOffset: number;
}

/** Copies the step's rows of an activation into the capture buffer of the same name, when one is requested. */
class CapturePoint implements Op {
  readonly family = "capture";
  constructor(readonly label: CaptureName, private src: GPUBuffer, private rowBytes: number, private model: { capture?: Capture }) {}
  encode(rec: Recorder, step: Step): void {
    const dst = this.model.capture?.buffers.get(this.label);
    if (dst) rec.copy(this.src, 0, dst, this.model.capture!.rowOffset * this.rowBytes, step.T * this.rowBytes);
  }
  cost(): Cost {
    return { flops: 0, bytes: 0 };
  }
}

export class Qwen2Model {
  /** Tokens already in the KV cache; the next token goes at this position. */
  position = 0;
  capture?: Capture;
  /** Number of dispatches recorded by the last step (for benchmarks). */
  lastDispatches = 0;
  /** Bytes of weights on the GPU, and bytes read from files to get them there. */
  weightBytes = 0;
  fileBytes = 0;

  private body: Op[] = [];
  private head: Op[] = [];
  private constructor(
    readonly config: Qwen2Config,
    readonly device: GPUDevice,
    readonly maxSeqLen: number,
    readonly prefillChunk: number,
    private ids: GPUBuffer,
    private logits: GPUBuffer,
  ) {}

  /** Loads a Hugging Face Qwen2 model directory (config.json + safetensors). */
  static async load(device: GPUDevice, dir: ModelDir, opts: LoadOptions = {}): Promise<Qwen2Model> {
    const cfg = await loadConfig(dir);
    const tensors = await openModelWeights(dir);
    try {
      checkConfigAgainstTensors(cfg, tensors, dir.name);
      const k = new Kernels(device);
      const weights = new SafetensorsWeights(k, bindingLimit(device, opts), tensors, dir.name, weightNames(cfg), opts.onProgress);
      return await Qwen2Model.build(k, cfg, weights, opts);
    } finally {
      await Promise.all([...new Set([...tensors.values()].map((t) => t.source))].map((s) => s.close()));
    }
  }

  /** A model of the given shape with seeded random BF16 weights generated on the GPU (for benchmarks). */
  static async random(device: GPUDevice, cfg: Qwen2Config, seed: number, opts: LoadOptions = {}): Promise<Qwen2Model> {
    const k = new Kernels(device);
    return Qwen2Model.build(k, cfg, new RandomWeights(k, bindingLimit(device, opts), seed), opts);
  }

  private static async build(k: Kernels, cfg: Qwen2Config, w: WeightSource, opts: LoadOptions): Promise<Qwen2Model> {
    const device = k.device;
    const H = cfg.hiddenSize, I = cfg.intermediateSize, D = cfg.headDim;
    const qDim = cfg.numHeads * D, kvDim = cfg.numKvHeads * D;
    const maxSeqLen = opts.maxSeqLen ?? Math.min(cfg.maxPositionEmbeddings, 4096);
    const maxBinding = bindingLimit(device, opts);
    // Activations are single bindings too, so the chunk is capped by the widest one (the MLP's).
    const prefillChunk = Math.max(1, Math.min(opts.prefillChunk ?? 256, Math.floor(maxBinding / (4 * Math.max(I, qDim, H)))));
    const cacheBytes = maxSeqLen * kvDim * 4;
    if (cacheBytes > maxBinding) {
      throw new Error(`maxSeqLen ${maxSeqLen}: a layer's KV cache (${cacheBytes} bytes) exceeds the storage binding limit ${maxBinding}`);
    }

    // Activations, sized for one prefill chunk (a decode step uses the first row).
    const T = prefillChunk;
    const ids = device.createBuffer({ label: "ids", size: Math.max(16, T * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    const x = activation(device, "x", T * H);
    const h = activation(device, "h", T * H);
    const q = activation(device, "q", T * qDim);
    const kk = activation(device, "k", T * kvDim);
    const v = activation(device, "v", T * kvDim);
    const attn = activation(device, "attn", T * qDim);
    const gate = activation(device, "gate", T * I);
    const upAct = activation(device, "up", T * I);
    const logits = activation(device, "logits", cfg.vocabSize);
    const noBias = activation(device, "no bias", 4);
    const rope = device.createBuffer({ label: "rope", size: maxSeqLen * D * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(rope, 0, ropeTable(D, cfg.ropeTheta, maxSeqLen));
    const dims = { nHeads: cfg.numHeads, nKv: cfg.numKvHeads, headDim: D };
    const eps = cfg.rmsNormEps;

    const embed = await w.matrix("model.embed_tokens.weight", cfg.vocabSize, H);
    const model = new Qwen2Model(cfg, device, maxSeqLen, prefillChunk, ids, logits);
    const body: Op[] = [await Embedding.create(k, ids, embed, x), new CapturePoint("embed", x, H * 4, model)];

    for (let l = 0; l < cfg.numLayers; l++) {
      const p = `model.layers.${l}.`;
      const matrix = (n: string, rows: number, cols: number) => w.matrix(p + n, rows, cols);
      const vector = (n: string, len: number) => w.vector(p + n, len);
      const kCache = activation(device, `k cache ${l}`, maxSeqLen * kvDim);
      const vCache = activation(device, `v cache ${l}`, maxSeqLen * kvDim);
      body.push(
        await RmsNorm.create(k, `${p}input_layernorm`, x, await vector("input_layernorm.weight", H), h, H, eps),
        await Linear.create(k, h, await matrix("self_attn.q_proj.weight", qDim, H), q, { bias: await vector("self_attn.q_proj.bias", qDim) }, noBias),
        await Linear.create(k, h, await matrix("self_attn.k_proj.weight", kvDim, H), kk, { bias: await vector("self_attn.k_proj.bias", kvDim) }, noBias),
        await Linear.create(k, h, await matrix("self_attn.v_proj.weight", kvDim, H), v, { bias: await vector("self_attn.v_proj.bias", kvDim) }, noBias),
        await RopeKv.create(k, `layer ${l}`, q, kk, v, rope, kCache, vCache, dims),
        await Attention.create(k, `layer ${l}`, q, kCache, vCache, attn, dims),
        await Linear.create(k, attn, await matrix("self_attn.o_proj.weight", H, qDim), x, { accumulate: true }, noBias),
        await RmsNorm.create(k, `${p}post_attention_layernorm`, x, await vector("post_attention_layernorm.weight", H), h, H, eps),
        await Linear.create(k, h, await matrix("mlp.gate_proj.weight", I, H), gate, {}, noBias),
        await Linear.create(k, h, await matrix("mlp.up_proj.weight", I, H), upAct, {}, noBias),
        await SwiGlu.create(k, gate, upAct, I),
        await Linear.create(k, gate, await matrix("mlp.down_proj.weight", H, I), x, { accumulate: true }, noBias),
        new CapturePoint(`layer${l}`, x, H * 4, model),
      );
    }
    const finalNorm = await w.vector("model.norm.weight", H);
    body.push(await RmsNorm.create(k, "model.norm", x, finalNorm, h, H, eps), new CapturePoint("final_norm", h, H * 4, model));

    const lmHead: GpuMatrix = cfg.tieWordEmbeddings ? embed : await w.matrix("lm_head.weight", cfg.vocabSize, H);
    const head: Op[] = [
      await Linear.create(k, h, lmHead, logits, { lastRowOnly: true }, noBias),
      await Argmax.create(k, logits, ids, cfg.vocabSize),
    ];
    await w.finish();

    model.body = body;
    model.head = head;
    model.weightBytes = w.gpuBytes;
    model.fileBytes = w.fileBytes;
    return model;
  }

  /** Every op of one forward step in order (body, then LM head and argmax), for profilers and benchmarks. */
  get ops(): readonly Op[] {
    return [...this.body, ...this.head];
  }

  /** Empties the KV cache (the next prefill starts at position 0). */
  reset(): void {
    this.position = 0;
  }

  private checkIds(ids: ArrayLike<number>): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new Error(`token id ${id} at index ${i} is out of range: the vocabulary has ${this.config.vocabSize} ids (0..${this.config.vocabSize - 1})`);
      }
    }
  }

  private checkRoom(n: number): void {
    if (this.position + n > this.maxSeqLen) {
      throw new Error(`${n} new tokens at position ${this.position} exceed the KV cache of ${this.maxSeqLen} positions ` +
        `(raise maxSeqLen, up to max_position_embeddings ${this.config.maxPositionEmbeddings})`);
    }
  }

  /** Runs the prompt through the model (appending to the KV cache) and returns the greedy next token. */
  async prefill(ids: ArrayLike<number>, opts: PrefillOptions = {}): Promise<PrefillResult> {
    if (ids.length === 0) throw new Error("prefill: empty prompt (no token ids)");
    this.checkIds(ids);
    this.checkRoom(ids.length);
    const n = ids.length;
    const rowBytes = this.config.hiddenSize * 4;
    const capture: Capture = { buffers: new Map(), rowOffset: 0 };
    for (const name of opts.capture ?? []) {
      capture.buffers.set(name, this.device.createBuffer({ label: `capture ${name}`, size: n * rowBytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));
    }
    this.capture = capture;
    try {
      let readback: Promise<{ next: number; logits?: Float32Array }> | undefined;
      for (let start = 0; start < n; start += this.prefillChunk) {
        const T = Math.min(this.prefillChunk, n - start);
        this.device.queue.writeBuffer(this.ids, 0, Uint32Array.from(Array.prototype.slice.call(ids, start, start + T)));
        capture.rowOffset = start;
        const last = start + T === n;
        readback = this.run({ T, pos0: this.position }, last, last && opts.logits === true);
        this.position += T;
        if (!last) await readback;
      }
      const { next, logits } = await readback!;
      const captured = new Map<CaptureName, Float32Array>();
      for (const [name, buf] of capture.buffers) {
        await buf.mapAsync(GPUMapMode.READ);
        captured.set(name, new Float32Array(buf.getMappedRange().slice(0)));
        buf.destroy();
      }
      return { next, captured, logits };
    } finally {
      this.capture = undefined;
    }
  }

  /** One decode step: feeds `token` (default: the previous greedy choice, already on the GPU) and returns the next greedy token. */
  async step(token?: number): Promise<number> {
    return (await this.stepWithLogits(token, false)).next;
  }

  /** A decode step that can also read back the logits (for sampling, which needs the distribution). */
  async stepWithLogits(token: number | undefined, logits: boolean): Promise<{ next: number; logits?: Float32Array }> {
    this.checkRoom(1);
    if (token !== undefined) {
      this.checkIds([token]);
      this.device.queue.writeBuffer(this.ids, 0, new Uint32Array([token]));
    }
    const out = await this.run({ T: 1, pos0: this.position }, true, logits);
    this.position += 1;
    return out;
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

  // Read-back buffers, created on first use and reused, so a decode step allocates nothing.
  private idOut?: GPUBuffer;
  private logitsOut?: GPUBuffer;

  private async run(step: Step, withHead: boolean, readLogits: boolean): Promise<{ next: number; logits?: Float32Array }> {
    const rec = new Recorder(this.device);
    for (const op of this.body) op.encode(rec, step);
    if (!withHead) {
      rec.submit();
      await this.device.queue.onSubmittedWorkDone();
      this.lastDispatches = rec.dispatches;
      return { next: -1 };
    }
    for (const op of this.head) op.encode(rec, step);
    const idOut = (this.idOut ??= this.readback("id readback", 16));
    rec.copy(this.ids, 0, idOut, 0, 4);
    const logitsOut = readLogits ? (this.logitsOut ??= this.readback("logits readback", this.config.vocabSize * 4)) : undefined;
    if (logitsOut) rec.copy(this.logits, 0, logitsOut, 0, this.config.vocabSize * 4);
    rec.submit();
    this.lastDispatches = rec.dispatches;
    await idOut.mapAsync(GPUMapMode.READ);
    const next = new Uint32Array(idOut.getMappedRange())[0];
    idOut.unmap();
    let logits: Float32Array | undefined;
    if (logitsOut) {
      await logitsOut.mapAsync(GPUMapMode.READ);
      logits = new Float32Array(logitsOut.getMappedRange().slice(0));
      logitsOut.unmap();
    }
    if (next >= this.config.vocabSize) throw new Error("argmax found no finite logit (NaN in the forward pass?)");
    return { next, logits };
  }

  private readback(label: string, size: number): GPUBuffer {
    return this.device.createBuffer({ label, size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }
}
