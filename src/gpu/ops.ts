// Operations: each one checks its shapes once when it is built, holds its bind groups and
// parameter buffers for the life of the model, and at encode time picks the kernel variant for
// the step (prefill of T tokens, or decode of one) and records the dispatch.
import { grid, Kernels, Params, Recorder, type WeightDType } from "./kernels.ts";

/** What one forward submission processes: T new tokens at positions pos0 .. pos0 + T - 1. */
export interface Step {
  T: number;
  pos0: number;
}

/** Compulsory work of one op for a step: arithmetic and bytes moved to or from memory (for rooflines). */
export interface Cost {
  flops: number;
  bytes: number;
}

export interface Op {
  readonly label: string;
  /** The kernel family, for per-family profiles. */
  readonly family: string;
  encode(rec: Recorder, step: Step): void;
  cost(step: Step): Cost;
}

const BYTES: Record<WeightDType, number> = { BF16: 2, F16: 2, F32: 4 };
/** Input rows per invocation in the prefill linear kernel (TM in shaders/linear.wgsl). */
const PREFILL_ROWS = 8;

/** Keys attended over a step: query t sees pos0 + t + 1 positions. */
function keysAttended(step: Step): number {
  return step.T * step.pos0 + (step.T * (step.T + 1)) / 2;
}

/** A weight matrix [rows, cols] in its stored dtype and the layout of shaders/weight_layout.wgsl, split by
 * rows (in blocks of 32) into parts that each fit one binding. */
export interface GpuMatrix {
  name: string;
  dtype: WeightDType;
  rows: number;
  cols: number;
  parts: { buffer: GPUBuffer; row0: number; rows: number }[];
}

export function activation(device: GPUDevice, label: string, elements: number): GPUBuffer {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  return device.createBuffer({ label, size: Math.max(16, elements * 4), usage });
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

export class Embedding implements Op {
  readonly label: string;
  readonly family = "embedding";
  private parts: { params: Params; bind: GPUBindGroup }[];

  private constructor(private pipeline: GPUComputePipeline, k: Kernels, ids: GPUBuffer, private table: GpuMatrix, x: GPUBuffer) {
    this.label = `embedding ${table.name}`;
    this.parts = table.parts.map((part, i) => ({
      params: new Params(k.device, 4, `${this.label}#${i}`),
      bind: undefined as unknown as GPUBindGroup,
    }));
    this.parts.forEach((p, i) => { p.bind = k.bindGroup("embedding", [p.params.buffer, ids, table.parts[i].buffer, x]); });
  }

  static async create(k: Kernels, ids: GPUBuffer, table: GpuMatrix, x: GPUBuffer): Promise<Embedding> {
    check(table.cols % 2 === 0, `${table.name}: hidden size ${table.cols} must be even`);
    return new Embedding(await k.pipeline("embedding", { dtype: table.dtype }), k, ids, table, x);
  }

  encode(rec: Recorder, step: Step): void {
    const halfH = this.table.cols / 2;
    this.parts.forEach(({ params, bind }, i) => {
      const part = this.table.parts[i];
      params.set(step.T, halfH, part.row0, part.rows);
      rec.dispatch(this.pipeline, bind, Math.ceil(halfH / 64), step.T);
    });
  }

  cost(step: Step): Cost {
    return { flops: 0, bytes: step.T * this.table.cols * (BYTES[this.table.dtype] + 4) };
  }
}

export class RmsNorm implements Op {
  readonly label: string;
  readonly family = "rmsnorm";
  private params: Params;
  private bind: GPUBindGroup;

  private constructor(private pipeline: GPUComputePipeline, k: Kernels, name: string, x: GPUBuffer, weight: GPUBuffer,
    y: GPUBuffer, private H: number, private eps: number) {
    this.label = `rmsnorm ${name}`;
    this.params = new Params(k.device, 2, this.label);
    this.bind = k.bindGroup("rmsnorm", [this.params.buffer, x, weight, y]);
  }

  static async create(k: Kernels, name: string, x: GPUBuffer, weight: GPUBuffer, y: GPUBuffer, H: number, eps: number) {
    return new RmsNorm(await k.pipeline("rmsnorm"), k, name, x, weight, y, H, eps);
  }

  encode(rec: Recorder, step: Step): void {
    this.params.set(this.H, { f32: this.eps });
    rec.dispatch(this.pipeline, this.bind, step.T);
  }

  cost(step: Step): Cost {
    return { flops: 4 * step.T * this.H, bytes: (2 * step.T + 1) * this.H * 4 };
  }
}

export interface LinearOptions {
  bias?: GPUBuffer;
  /** Add into y instead of overwriting it (residual connections). */
  accumulate?: boolean;
  /** Only the last of the step's rows (the LM head needs just the next-token logits). */
  lastRowOnly?: boolean;
}

/** y = x W^T (+ bias) (+ y), with W [N, K] in HF's orientation, x [T, K], y [T, N]. */
export class Linear implements Op {
  readonly label: string;
  private parts: { params: Params; bind: GPUBindGroup }[];

  private constructor(private prefill: GPUComputePipeline, private decode: GPUComputePipeline, k: Kernels,
    x: GPUBuffer, private W: GpuMatrix, y: GPUBuffer, private opts: LinearOptions, dummyBias: GPUBuffer) {
    this.label = `linear ${W.name}`;
    this.parts = W.parts.map((part, i) => {
      const params = new Params(k.device, 6, `${this.label}#${i}`);
      return { params, bind: k.bindGroup("linear", [params.buffer, x, part.buffer, opts.bias ?? dummyBias, y], this.label) };
    });
  }

  static async create(k: Kernels, x: GPUBuffer, W: GpuMatrix, y: GPUBuffer, opts: LinearOptions, dummyBias: GPUBuffer) {
    check(W.cols % 2 === 0, `${W.name}: input size ${W.cols} must be even`);
    const variant = (tm: number) => ({
      dtype: W.dtype,
      constants: { TM: tm, HAS_BIAS: opts.bias ? 1 : 0, ACCUMULATE: opts.accumulate ? 1 : 0 },
    });
    const [prefill, decode] = await Promise.all([k.pipeline("linear", variant(PREFILL_ROWS)), k.pipeline("linear", variant(1))]);
    return new Linear(prefill, decode, k, x, W, y, opts, dummyBias);
  }

  encode(rec: Recorder, step: Step): void {
    const oneRow = step.T === 1 || this.opts.lastRowOnly;
    const M = oneRow ? 1 : step.T;
    this.parts.forEach(({ params, bind }, i) => {
      const part = this.W.parts[i];
      params.set(M, this.W.cols, this.W.rows, part.row0, part.rows, this.opts.lastRowOnly ? step.T - 1 : 0);
      // Each invocation covers 4 weight rows; see shaders/linear.wgsl.
      const groups = Math.ceil(Math.ceil(part.rows / 4) / 64);
      rec.dispatch(oneRow ? this.decode : this.prefill, bind, groups, Math.ceil(M / (oneRow ? 1 : PREFILL_ROWS)));
    });
  }

  get family(): string {
    return this.opts.lastRowOnly ? "lm_head" : "linear";
  }

  cost(step: Step): Cost {
    const M = step.T === 1 || this.opts.lastRowOnly ? 1 : step.T;
    const { rows: N, cols: K } = this.W;
    const outBytes = M * N * 4 * (this.opts.accumulate ? 2 : 1);
    return { flops: 2 * M * N * K, bytes: N * K * BYTES[this.W.dtype] + M * K * 4 + outBytes + (this.opts.bias ? N * 4 : 0) };
  }
}

export interface AttentionDims {
  nHeads: number;
  nKv: number;
  headDim: number;
}

/** RoPE on q (in place) and k, and the KV-cache write of k and v at the step's positions. */
export class RopeKv implements Op {
  readonly label: string;
  readonly family = "rope_kv";
  private params: Params;
  private bind: GPUBindGroup;

  private constructor(private pipeline: GPUComputePipeline, k: Kernels, name: string, bufs: GPUBuffer[], private d: AttentionDims) {
    this.label = `rope+kv ${name}`;
    this.params = new Params(k.device, 5, this.label);
    this.bind = k.bindGroup("rope_kv", [this.params.buffer, ...bufs]);
  }

  static async create(k: Kernels, name: string, q: GPUBuffer, kk: GPUBuffer, v: GPUBuffer, rope: GPUBuffer,
    kCache: GPUBuffer, vCache: GPUBuffer, d: AttentionDims) {
    return new RopeKv(await k.pipeline("rope_kv"), k, name, [q, kk, v, rope, kCache, vCache], d);
  }

  encode(rec: Recorder, step: Step): void {
    this.params.set(step.T, step.pos0, this.d.nHeads, this.d.nKv, this.d.headDim);
    rec.dispatch(this.pipeline, this.bind, Math.ceil(this.d.headDim / 2 / 64), this.d.nHeads + this.d.nKv, step.T);
  }

  cost(step: Step): Cost {
    const { nHeads, nKv, headDim } = this.d;
    return { flops: 3 * step.T * (nHeads + nKv) * headDim, bytes: step.T * ((nHeads + nKv) * headDim * 12 + nKv * headDim * 8) };
  }
}

export class Attention implements Op {
  readonly label: string;
  readonly family = "attention";
  private params: Params;
  private bind: GPUBindGroup;

  private constructor(private pipeline: GPUComputePipeline, k: Kernels, name: string, bufs: GPUBuffer[], private d: AttentionDims) {
    this.label = `attention ${name}`;
    this.params = new Params(k.device, 6, this.label);
    this.bind = k.bindGroup("attention", [this.params.buffer, ...bufs]);
  }

  static async create(k: Kernels, name: string, q: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer, out: GPUBuffer,
    d: AttentionDims) {
    check(d.headDim <= 256, `head_dim ${d.headDim} is larger than the attention kernel's 256`);
    check(d.nHeads % d.nKv === 0, `num_attention_heads ${d.nHeads} is not a multiple of num_key_value_heads ${d.nKv}`);
    return new Attention(await k.pipeline("attention"), k, name, [q, kCache, vCache, out], d);
  }

  encode(rec: Recorder, step: Step): void {
    const { nHeads, nKv, headDim } = this.d;
    this.params.set(step.T, step.pos0, nHeads, nKv, headDim, { f32: 1 / Math.sqrt(headDim) });
    rec.dispatch(this.pipeline, this.bind, step.T, nHeads);
  }

  cost(step: Step): Cost {
    const { nHeads, nKv, headDim } = this.d;
    const keys = keysAttended(step);
    // Each KV head's cache is read once per query position (its query heads share it through the cache).
    return { flops: 4 * nHeads * keys * headDim, bytes: 2 * nKv * keys * headDim * 4 + 2 * step.T * nHeads * headDim * 4 };
  }
}

/** gate = silu(gate) * up over T rows of `width` elements. */
export class SwiGlu implements Op {
  readonly label = "swiglu";
  readonly family = "swiglu";
  private params: Params;
  private bind: GPUBindGroup;

  private constructor(private pipeline: GPUComputePipeline, k: Kernels, gate: GPUBuffer, up: GPUBuffer, private width: number) {
    this.params = new Params(k.device, 1, this.label);
    this.bind = k.bindGroup("swiglu", [this.params.buffer, gate, up]);
  }

  static async create(k: Kernels, gate: GPUBuffer, up: GPUBuffer, width: number) {
    return new SwiGlu(await k.pipeline("swiglu"), k, gate, up, width);
  }

  encode(rec: Recorder, step: Step): void {
    const n = step.T * this.width;
    this.params.set(n);
    rec.dispatch(this.pipeline, this.bind, ...grid(Math.ceil(n / 64)));
  }

  cost(step: Step): Cost {
    return { flops: 5 * step.T * this.width, bytes: 3 * step.T * this.width * 4 };
  }
}

/** out[0] = argmax(logits[0..n)). */
export class Argmax implements Op {
  readonly label = "argmax";
  readonly family = "argmax";
  private params: Params;
  private bind: GPUBindGroup;

  private constructor(private pipeline: GPUComputePipeline, k: Kernels, logits: GPUBuffer, out: GPUBuffer, private n: number) {
    this.params = new Params(k.device, 1, this.label);
    this.bind = k.bindGroup("argmax", [this.params.buffer, logits, out]);
  }

  static async create(k: Kernels, logits: GPUBuffer, out: GPUBuffer, n: number) {
    return new Argmax(await k.pipeline("argmax"), k, logits, out, n);
  }

  encode(rec: Recorder, _step: Step): void {
    this.params.set(this.n);
    rec.dispatch(this.pipeline, this.bind, 1);
  }

  cost(_step: Step): Cost {
    return { flops: this.n, bytes: this.n * 4 };
  }
}
