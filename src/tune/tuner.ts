// Choosing each op slot's kernel variant by measurement on the adapter at hand, at the model's own shapes.
//
// For every slot, each candidate the adapter supports (and the precision allows) is bound over the loaded model's
// own weights and buffers, checked once against the reference variant on random inputs (a candidate whose output
// differs beyond its tolerance is dropped, and the drop reported), then timed over layers chained in one submission
// (each layer reads its own weights and cache, as a real step does, so no cache flatters it: every layer, or for the
// linear layers at decode as many as hold CHAIN_BYTES of weights, far more than any GPU's last-level cache; one
// layer for the prefill linears, which use each weight for hundreds of rows). The fastest
// correct one is kept (the greedy choice's token ids must be the reference's exactly). The reference variants are
// today's kernels ("rows", "online", "separate"). Slots are measured
// cheapest first (decode before prefill), so a time budget spent on a slow adapter leaves the dearest measurements
// out; swiglu.decode and lm_head.decode come after linear.decode, whose choice their "separate" variants run.
import type { Kernels } from "../gpu/kernel.ts";
import type { GpuMatrix } from "../gpu/matrix.ts";
import { Recorder } from "../gpu/recorder.ts";
import { GpuTimer, type MeasureOptions } from "../gpu/timer.ts";
import { Attention, type AttentionVariant } from "../ops/attention.ts";
import { GateUpSwiGlu, type SwiGluVariant } from "../ops/gate-up-swiglu.ts";
import { allVariants, DEFAULT_KERNELS, resolveKernels, type KernelChoice } from "../ops/kernel-variants.ts";
import { LmHead, type LmHeadVariant } from "../ops/lm-head.ts";
import { Linear, type LinearVariant } from "../ops/linear.ts";
import type { Step, StepOp } from "../ops/op.ts";
import { DECODE_MAX_ROWS, isSupported, TUNED_CONTEXT, type OpSlot, type Precision, type VariantInfo } from "../ops/variant.ts";
import type { Qwen2Config } from "../model/config.ts";
import type { Qwen2Weights } from "../model/qwen2-weights.ts";
import { mulberry32 } from "../util/prng.ts";

/** What the tuner binds candidates over: the model's weights and buffers, after loading and before its ops exist. */
export interface TuneTarget {
  kernels: Kernels;
  cfg: Qwen2Config;
  weights: Qwen2Weights;
  /** Activations sized for maxTokens rows, the token table, the gathered output rows, and each layer's KV cache. */
  buffers: {
    tokens: GPUBuffer; x: GPUBuffer; h: GPUBuffer; qkv: GPUBuffer; q: GPUBuffer; attn: GPUBuffer;
    gateUp: GPUBuffer; act: GPUBuffer; hOut: GPUBuffer; logits: GPUBuffer; next: GPUBuffer; kCaches: GPUBuffer[]; vCaches: GPUBuffer[];
  };
  maxBatch: number;
  maxSeqLen: number;
  maxTokens: number;
}

export interface TuneOptions {
  /** "f16" lets variants that compute in half precision compete (at their own tolerance). Default "f32". */
  precision?: Precision;
  /** Variants fixed by the caller: their slots are not tuned. */
  fixed?: Partial<KernelChoice>;
  /** Each candidate's timing: submissions, and the least time each lasts. Default 2 runs of 0.05 s. */
  measure?: MeasureOptions;
  /**
   * Seconds after which the candidates not yet measured are skipped (each slot keeps the fastest measured so far,
   * today's kernel when none was). Default: no limit; a model load sets one (src/tune/choose.ts).
   */
  budgetSeconds?: number;
  onProgress?: (done: number, total: number, what: string) => void;
}

/** One candidate's outcome: a row of `r3gpu tune`. */
export interface VariantResult {
  op: OpSlot;
  variant: string;
  precision: Precision;
  about: string;
  supported: boolean;
  /** null when not checked (unsupported, or not allowed by the precision). */
  correct: boolean | null;
  /** Largest |candidate - reference| / max|reference| over the checked outputs (token ids: the fraction that differ). */
  error: number | null;
  tolerance: number;
  chosen: boolean;
  /** Device seconds of the timed work (`step.layers` layers of this slot), and the rates from the ops' compulsory work. */
  seconds: number | null;
  gbps: number | null;
  gflops: number | null;
  /** The step timed: rows (tokens), for attention the keys per token, and the layers chained. */
  step: { rows: number; keys?: number; layers: number };
  note?: string;
}

export interface TuneReport {
  choice: KernelChoice;
  results: VariantResult[];
  seconds: number;
}

/** The golden tolerance for f32 variants; f16 variants state their own (half precision: 2^-11 relative per rounding). */
const F32_TOLERANCE = 1e-4;
const F16_TOLERANCE = 2e-2;
const toleranceOf = (v: VariantInfo) => (v.precision === "f16" ? F16_TOLERANCE : F32_TOLERANCE);

interface SlotPlan {
  slot: OpSlot;
  step: Step;
  /** Layers chained in a timing. */
  layers: number;
  /** Binds the slot's ops for every layer with a variant. */
  bind(variant: VariantInfo): StepOp[];
  /** The checked op (layer 0's representative work), writing `checkFloats` floats into `out`. */
  checked(variant: VariantInfo, out: GPUBuffer): StepOp;
  checkFloats: number;
  /** Writes random inputs for the check. */
  fill(): void;
  /** The output is token ids, which must equal the reference's (floats are compared within the tolerance). */
  exact?: boolean;
}

const steps = (T: number, outputs: number, keysPerToken: number): Step => ({ T, outputs, keys: T * keysPerToken, maxKeys: keysPerToken });

/** Weights the chained linear layers hold at least (all layers where the model has fewer). */
const CHAIN_BYTES = 256 * 2 ** 20;

/** `choice`: the slots chosen so far (the separate gate/up and SwiGLU runs the linear.decode slot's choice). */
function plans(t: TuneTarget, choice: KernelChoice): SlotPlan[] {
  const { kernels, cfg, weights: w, buffers: b } = t;
  const device = kernels.device;
  const random = mulberry32(7);
  const fillRandom = (buffer: GPUBuffer, floats: number, scale = 1) => {
    const values = new Float32Array(floats);
    for (let i = 0; i < floats; i++) values[i] = scale * (2 * random() - 1);
    device.queue.writeBuffer(buffer, 0, values);
  };
  const H = cfg.hiddenSize, I = cfg.intermediateSize;
  const qDim = cfg.numHeads * cfg.headDim, kvDim = cfg.numKvHeads * cfg.headDim;
  const decodeRows = Math.min(t.maxBatch, DECODE_MAX_ROWS);
  const prefillRows = t.maxTokens;

  // The linear layers of a layer, as the model binds them (inputs and outputs by activation).
  const projections = (l: number): [GpuMatrix, GPUBuffer, GPUBuffer, GPUBuffer | undefined][] => {
    const { self_attn: a, mlp } = w.layers[l];
    return [
      [a.qkv_proj.weight, b.h, b.qkv, a.qkv_proj.bias], [a.o_proj.weight, b.attn, b.x, undefined],
      [mlp.gate_up_proj.weight, b.h, b.gateUp, undefined], [mlp.down_proj.weight, b.act, b.x, undefined],
    ];
  };
  const layerBytes = (l: number) => projections(l).reduce((n, [W]) => n + W.parts.reduce((m, p) => m + p.buffer.size, 0), 0);
  let chained = 0;
  for (let bytes = 0; chained < w.layers.length && bytes < CHAIN_BYTES; chained++) bytes += layerBytes(chained);
  const linearPlan = (slot: OpSlot, rows: number): SlotPlan => {
    const variants = (v: VariantInfo) => ({ vector: v as LinearVariant, decode: v as LinearVariant, prefill: v as LinearVariant });
    // A decode step also runs the LM head, at one row per sequence (at most maxBatch: a one-sequence model's steps of
    // several rows are short prompts, with one output); a prefill step's LM head is a decode-slot matter.
    const withHead = slot !== "linear.prefill";
    const outputs = withHead ? Math.min(rows, t.maxBatch) : 1;
    // The check: the LM head where it has the step's rows (the longest sums and the most outputs), else the widest
    // projection of layer 0 (the MLP's down projection).
    const headChecked = withHead && outputs === rows;
    // A prefill step uses each weight for all its rows, so it is bound by arithmetic and no cache flatters it: one
    // layer times it (on a CPU driver ten layers of 256 rows took 17 s a candidate, most of the load's budget).
    const layers = withHead ? chained : 1;
    return {
      slot, step: steps(rows, outputs, 1), layers,
      bind: (v) => [
        ...w.layers.slice(0, layers).flatMap((_, l) => projections(l).map(([W, x, y, bias]) => new Linear(kernels, x, W, y, { variants: variants(v), bias }))),
        ...(withHead ? [new Linear(kernels, b.hOut, w.lm_head, b.logits, { variants: variants(v), perOutput: true })] : []),
      ],
      checked: (v, out) => headChecked
        ? new Linear(kernels, b.hOut, w.lm_head, out, { variants: variants(v), perOutput: true })
        : new Linear(kernels, b.act, w.layers[0].mlp.down_proj.weight, out, { variants: variants(v) }),
      checkFloats: rows * (headChecked ? cfg.vocabSize : H),
      fill: () => {
        if (withHead) fillRandom(b.hOut, outputs * H);
        if (!headChecked) fillRandom(b.act, rows * I);
      },
    };
  };
  // The MLP's gate/up projection and SwiGLU at a decode step, fused or not, over the chained layers' weights.
  const swigluPlan = (rows: number): SlotPlan => {
    const op = (v: VariantInfo, l: number, out: GPUBuffer) => new GateUpSwiGlu(kernels, b.h, w.layers[l].mlp.gate_up_proj.weight, b.gateUp, out, I,
      { linear: resolveKernels(device, choice).linear, decode: v as SwiGluVariant });
    return {
      slot: "swiglu.decode", step: steps(rows, rows, 1), layers: chained,
      bind: (v) => w.layers.slice(0, chained).map((_, l) => op(v, l, b.act)),
      checked: (v, out) => op(v, 0, out),
      checkFloats: rows * I,
      fill: () => fillRandom(b.h, rows * H),
    };
  };
  // The LM head and the greedy choice of a decode step's outputs, fused or not.
  const lmHeadPlan = (rows: number): SlotPlan => {
    const op = (v: VariantInfo, out: GPUBuffer) => new LmHead(kernels, b.hOut, w.lm_head, b.logits, out,
      { linear: resolveKernels(device, choice).linear, decode: v as LmHeadVariant });
    return {
      slot: "lm_head.decode", step: steps(rows, rows, 1), layers: 1, exact: true,
      bind: (v) => [op(v, b.next)],
      checked: (v, out) => op(v, out),
      checkFloats: rows,
      fill: () => fillRandom(b.hOut, rows * H),
    };
  };
  const attentionPlan = (slot: OpSlot, rows: number, keys: number): SlotPlan => {
    const dims = { nHeads: cfg.numHeads, nKv: cfg.numKvHeads, headDim: cfg.headDim };
    const limits = { maxTokens: t.maxTokens, maxKeys: t.maxSeqLen };
    const attention = (v: VariantInfo, l: number, out: GPUBuffer) => new Attention(kernels, `tune ${l}`,
      { tokens: b.tokens, q: b.q, kCache: b.kCaches[l], vCache: b.vCaches[l], slotLen: t.maxSeqLen }, out, dims,
      { decode: v as AttentionVariant, prefill: v as AttentionVariant }, limits);
    // Decode: one token per sequence, each at `keys` positions; prefill: one sequence's `rows` tokens from 0.
    const decode = slot === "attention.decode";
    const table = new Uint32Array(2 * rows);
    for (let r = 0; r < rows; r++) table.set(decode ? [keys - 1, r] : [r, 0], 2 * r);
    const keysSum = decode ? rows * keys : (rows * (rows + 1)) / 2;
    return {
      slot, step: { T: rows, outputs: decode ? rows : 1, keys: keysSum, maxKeys: decode ? keys : rows }, layers: w.layers.length,
      bind: (v) => w.layers.map((_, l) => attention(v, l, b.attn)),
      checked: (v, out) => attention(v, 0, out),
      checkFloats: rows * qDim,
      fill: () => {
        device.queue.writeBuffer(b.tokens, 0, table);
        fillRandom(b.q, rows * qDim);
        // Decode tokens read slot r's first `keys` rows; a prefill reads slot 0's first `rows`.
        const cacheRows = decode ? (rows - 1) * t.maxSeqLen + keys : keys;
        fillRandom(b.kCaches[0], cacheRows * kvDim);
        fillRandom(b.vCaches[0], cacheRows * kvDim);
      },
    };
  };
  const decodeKeys = Math.min(t.maxSeqLen, TUNED_CONTEXT);
  return [
    linearPlan("linear.vector", 1),
    // Steps of 2 to 16 rows: a batch's decode step, or (one sequence) a short prompt; none when a step holds one token.
    linearPlan("linear.decode", Math.min(Math.max(2, decodeRows), t.maxTokens)),
    swigluPlan(decodeRows),
    lmHeadPlan(decodeRows),
    attentionPlan("attention.decode", decodeRows, decodeKeys),
    // A prompt fills one slot at most: a chunk of maxTokens, or the whole context where that is shorter.
    attentionPlan("attention.prefill", Math.min(prefillRows, t.maxSeqLen), Math.min(prefillRows, t.maxSeqLen)),
    linearPlan("linear.prefill", prefillRows),
  ];
}

async function readFloats(device: GPUDevice, src: GPUBuffer, floats: number): Promise<Float32Array> {
  const staging = device.createBuffer({ size: floats * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, floats * 4);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

/** The fraction of ids (u32 bits) that differ. */
function idMismatch(got: Float32Array, want: Float32Array): number {
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length), b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  return a.filter((x, i) => x !== b[i]).length / Math.max(1, b.length);
}

function relativeError(got: Float32Array, want: Float32Array): number {
  let err = 0, ref = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    err = Number.isNaN(e) ? Infinity : Math.max(err, e);
    ref = Math.max(ref, Math.abs(want[i]));
  }
  return ref > 0 ? err / ref : err;
}

export async function tuneKernels(t: TuneTarget, opts: TuneOptions = {}): Promise<TuneReport> {
  const t0 = performance.now();
  const { device } = t.kernels;
  const precision = opts.precision ?? "f32";
  const measure = opts.measure ?? { runs: 2, minSeconds: 0.05 };
  const timer = new GpuTimer(device);
  const budget = opts.budgetSeconds ?? Infinity;
  const spent = () => (performance.now() - t0) / 1000 > budget;
  const choice: KernelChoice = { ...DEFAULT_KERNELS, ...opts.fixed };
  const results: VariantResult[] = [];
  const all = allVariants();
  const slots = plans(t, choice).filter((p) => opts.fixed?.[p.slot] === undefined);
  const total = slots.reduce((n, p) => n + all.filter((v) => v.slot === p.slot).length, 0);
  let done = 0;
  for (const plan of slots) {
    const candidates = all.filter((v) => v.slot === plan.slot);
    const reference = candidates.find((v) => v.name === DEFAULT_KERNELS[plan.slot])!;
    const stepInfo = { rows: plan.step.T, ...(plan.slot.startsWith("attention") ? { keys: plan.step.maxKeys } : {}), layers: plan.layers };
    // The reference's output on the check's random inputs; every candidate must reproduce it.
    const floats = plan.checkFloats;
    const refOut = device.createBuffer({ label: "tune reference", size: floats * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const candOut = device.createBuffer({ label: "tune candidate", size: floats * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const ops: StepOp[] = [];
    try {
      plan.fill();
      const refCheck = plan.checked(reference, refOut);
      ops.push(refCheck);
      await t.kernels.compiled();
      const rec = new Recorder(device);
      refCheck.encode(rec, plan.step);
      rec.submit();
      const want = await readFloats(device, refOut, floats);
      let best: { name: string; seconds: number } | undefined;
      for (const v of candidates) {
        opts.onProgress?.(done++, total, `${plan.slot}=${v.name}`);
        const row: VariantResult = {
          op: plan.slot, variant: v.name, precision: v.precision, about: v.about, supported: isSupported(v, device),
          correct: null, error: null, tolerance: plan.exact ? 0 : toleranceOf(v), chosen: false, seconds: null, gbps: null, gflops: null, step: stepInfo,
        };
        results.push(row);
        if (!row.supported) { row.note = `needs ${v.requires.join(", ")}`; continue; }
        if (v.precision === "f16" && precision !== "f16") { row.note = "computes in f16: allowed with --precision f16"; continue; }
        if (v !== reference && spent()) { row.note = `skipped: the tuning budget of ${budget} s was spent (r3gpu tune measures every variant)`; continue; }
        try {
          const check = plan.checked(v, candOut);
          ops.push(check);
          const bound = plan.bind(v);
          ops.push(...bound);
          await t.kernels.compiled();
          const r = new Recorder(device);
          check.encode(r, plan.step);
          r.submit();
          const got = await readFloats(device, candOut, floats);
          row.error = plan.exact ? idMismatch(got, want) : relativeError(got, want);
          row.correct = row.error <= row.tolerance;
          if (!row.correct) { row.note = `dropped: error ${row.error.toExponential(2)} > ${row.tolerance}`; continue; }
          const { seconds } = await timer.measure((rr) => { for (const op of bound) op.encode(rr, plan.step); }, measure);
          let flops = 0, bytes = 0;
          for (const op of bound) { const c = op.cost(plan.step); flops += c.flops; bytes += c.bytes; }
          Object.assign(row, { seconds, gbps: bytes / seconds / 1e9, gflops: flops / seconds / 1e9 });
          if (!best || seconds < best.seconds) best = { name: v.name, seconds };
        } catch (e) {
          row.correct = false;
          row.note = `failed: ${(e as Error).message.split("\n")[0]}`;
        }
      }
      if (best) choice[plan.slot] = best.name;
    } finally {
      for (const op of ops) op.destroy();
      refOut.destroy();
      candOut.destroy();
    }
  }
  for (const r of results) r.chosen = choice[r.op] === r.variant && r.correct !== false && opts.fixed?.[r.op] === undefined;
  return { choice, results, seconds: (performance.now() - t0) / 1000 };
}
