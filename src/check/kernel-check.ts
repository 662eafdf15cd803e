// A kernel variant against the float64 references of src/check/reference.ts, on seeded random problems at a model's
// shapes: what `r3gpu tune --kernel` runs on a user's kernel before timing it (the built-in variants get the same
// checks, and more, in the unit tests). Each case states its inputs; a case passes when every output is within the
// reference's error bound for the variant's precision and the rows past the step's outputs are untouched.
import type { Kernels } from "../gpu/kernel.ts";
import { Recorder } from "../gpu/recorder.ts";
import { planSteps } from "../model/batch.ts";
import type { Qwen2Config } from "../model/config.ts";
import { Attention, type AttentionVariant } from "../ops/attention.ts";
import { allVariants, DEFAULT_KERNELS, type KernelChoice } from "../ops/kernel-variants.ts";
import { GateUpSwiGlu, type SwiGluVariant } from "../ops/gate-up-swiglu.ts";
import { Linear, type LinearVariant } from "../ops/linear.ts";
import { LmHead, type LmHeadVariant } from "../ops/lm-head.ts";
import { ROWS_DECODE, ROWS_PREFILL } from "../ops/linear-rows.ts";
import { sequenceStep } from "../ops/op.ts";
import { isSupported, OP_SLOTS, type VariantInfo } from "../ops/variant.ts";
import { mulberry32 } from "../util/prng.ts";
import { gpuMatrix, readF32, readU32, uploadF32, uploadU32 } from "./device-data.ts";
import { assertClose, attentionRef, linearRef, normalF32, quantize, swigluRef, uniformF32 } from "./reference.ts";

export interface KernelCheckCase {
  /** The problem, in words (shape, rows, bias or accumulation; sequences and contexts). */
  what: string;
  ok: boolean;
  /** Largest |error| / bound over the outputs (<= 1 passes); null when the run failed. */
  maxRatio: number | null;
  /** Why it failed. */
  error?: string;
}

/** Rows of the linear cases: the vector slot serves 1, a decode slot 1 to 16 (a batch), a prefill slot a prompt chunk. */
const LINEAR_ROWS = { "linear.vector": [1], "linear.decode": [1, 3, 16], "linear.prefill": [33, 128] };
/** Output columns compared at prefill (a sample, so that the float64 reference stays quick at real widths). */
const PREFILL_COLUMNS = 256;

/**
 * Few kernel choices that together run every variant the device supports, for golden checks of all of them: choice
 * i takes each slot's i-th f32 variant (today's kernel where a slot has fewer), so a variant's error cannot hide
 * behind another slot's kernel, which is today's or another checked variant; each f16 variant gets a choice of its
 * own, with today's kernels elsewhere, so that a check at the f16 tolerance says which variant it holds to it.
 */
export function coveringChoices(device: GPUDevice): KernelChoice[] {
  const supported = allVariants().filter((v) => isSupported(v, device));
  const f32 = OP_SLOTS.map((slot) => supported.filter((v) => v.slot === slot && v.precision === "f32" && v.name !== DEFAULT_KERNELS[slot]));
  const out: KernelChoice[] = [];
  for (let i = 0; i < Math.max(...f32.map((l) => l.length)); i++) {
    out.push(Object.fromEntries(OP_SLOTS.map((slot, s) => [slot, f32[s][i]?.name ?? DEFAULT_KERNELS[slot]])) as KernelChoice);
  }
  for (const v of supported.filter((v) => v.precision === "f16")) out.push({ ...DEFAULT_KERNELS, [v.slot]: v.name });
  return out;
}

export async function checkVariantFloat64(kernels: Kernels, v: VariantInfo, cfg: Qwen2Config): Promise<KernelCheckCase[]> {
  if (v.slot === "swiglu.decode") return checkSwiGlu(kernels, v as SwiGluVariant, cfg);
  if (v.slot === "lm_head.decode") return checkLmHead(kernels, v as LmHeadVariant, cfg);
  return v.slot.startsWith("linear.") ? checkLinear(kernels, v as LinearVariant, cfg) : checkAttention(kernels, v as AttentionVariant, cfg);
}

async function run(what: string, body: () => Promise<number>): Promise<KernelCheckCase> {
  try {
    return { what, ok: true, maxRatio: await body() };
  } catch (e) {
    return { what, ok: false, maxRatio: null, error: (e as Error).message.split("\n")[0] };
  }
}

async function checkLinear(kernels: Kernels, v: LinearVariant, cfg: Qwen2Config): Promise<KernelCheckCase[]> {
  const { device } = kernels;
  const qkv = cfg.numHeads * cfg.headDim + 2 * cfg.numKvHeads * cfg.headDim;
  // The model's q/k/v projection (with its bias) and its down projection (accumulated onto the residual stream).
  const shapes = [
    { role: "q/k/v", K: cfg.hiddenSize, N: qkv, bias: true, accumulate: false },
    { role: "down", K: cfg.intermediateSize, N: cfg.hiddenSize, bias: false, accumulate: true },
  ];
  const out: KernelCheckCase[] = [];
  for (const [i, s] of shapes.entries()) {
    const rand = mulberry32(1000 + i);
    const Wv = quantize(uniformF32(rand, s.N * s.K), "BF16");
    const W = gpuMatrix(device, `check ${s.role}`, Wv, s.N, s.K, "BF16");
    try {
      for (const M of LINEAR_ROWS[v.slot as keyof typeof LINEAR_ROWS]) {
        const what = `${s.role} K=${s.K} N=${s.N}${s.bias ? " +bias" : ""}${s.accumulate ? " accumulated" : ""}, ${M} rows`;
        out.push(await run(what, async () => {
          const xv = normalF32(rand, M * s.K);
          const biasV = s.bias ? normalF32(rand, s.N) : undefined;
          const y0 = normalF32(rand, (M + 1) * s.N, 2);
          const x = uploadF32(device, xv, "x"), y = uploadF32(device, y0, "y");
          const bias = biasV && uploadF32(device, biasV, "bias");
          const op = new Linear(kernels, x, W, y, { variants: { decode: v, prefill: v }, bias, accumulate: s.accumulate });
          try {
            await kernels.compiled();
            const rec = new Recorder(device);
            op.encode(rec, sequenceStep(M, 0));
            rec.submit();
            const got = await readF32(device, y, y0.length);
            const cols = v.slot === "linear.prefill" && s.N > PREFILL_COLUMNS
              ? Array.from({ length: PREFILL_COLUMNS }, (_, c) => Math.floor((c * s.N) / PREFILL_COLUMNS)) : undefined;
            const { y: ref, bound } = linearRef(xv, Wv, s.K, s.N, [...Array(M).keys()], biasV, s.accumulate ? y0 : undefined,
              { precision: v.precision, dtype: "BF16", cols });
            const C = cols?.length ?? s.N;
            const at = (i: number) => Math.floor(i / C) * s.N + (cols ? cols[i % C] : i % C);
            const { maxRatio } = assertClose(Array.from(ref, (_, i) => got[at(i)]), ref, (i) => bound[i], "output");
            assertClose(got.subarray(M * s.N), y0.subarray(M * s.N), 0, "the row past the output (must stay untouched)");
            return maxRatio;
          } finally {
            op.destroy();
            for (const b of [x, y, bias]) b?.destroy();
          }
        }));
      }
    } finally {
      W.parts.forEach((p) => p.buffer.destroy());
    }
  }
  return out;
}

/** The MLP's stacked gate/up projection and SwiGLU at the model's widths, at 1, 3 and 16 rows. */
async function checkSwiGlu(kernels: Kernels, v: SwiGluVariant, cfg: Qwen2Config): Promise<KernelCheckCase[]> {
  const { device } = kernels;
  const K = cfg.hiddenSize, I = cfg.intermediateSize;
  const rand = mulberry32(3000);
  const Wv = quantize(uniformF32(rand, 2 * I * K), "BF16");
  const W = gpuMatrix(device, "check gate/up", Wv, 2 * I, K, "BF16");
  const out: KernelCheckCase[] = [];
  try {
    for (const M of LINEAR_ROWS["linear.decode"]) {
      out.push(await run(`gate/up K=${K} I=${I} + SwiGLU, ${M} rows`, async () => {
        const xv = normalF32(rand, M * K);
        const act0 = normalF32(rand, (M + 1) * I, 2);
        const x = uploadF32(device, xv, "x"), act = uploadF32(device, act0, "act");
        const gateUp = uploadF32(device, new Float32Array(M * 2 * I), "gate_up");
        const op = new GateUpSwiGlu(kernels, x, W, gateUp, act, I, { linear: { decode: ROWS_DECODE, prefill: ROWS_PREFILL }, decode: v });
        try {
          await kernels.compiled();
          const rec = new Recorder(device);
          op.encode(rec, sequenceStep(M, 0));
          rec.submit();
          const got = await readF32(device, act, act0.length);
          const ref = swigluRef(linearRef(xv, Wv, K, 2 * I, [...Array(M).keys()], undefined, undefined, { dtype: "BF16" }), M, I);
          const { maxRatio } = assertClose(got.subarray(0, M * I), ref.y, (i) => ref.bound[i], "output");
          assertClose(got.subarray(M * I), act0.subarray(M * I), 0, "the row past the output (must stay untouched)");
          return maxRatio;
        } finally {
          op.destroy();
          for (const b of [x, act, gateUp]) b.destroy();
        }
      }));
    }
  } finally {
    W.parts.forEach((p) => p.buffer.destroy());
  }
  return out;
}

/**
 * The LM head and greedy choice at the model's width over the first (up to) 4099 rows of a vocabulary in two parts,
 * at 1, 3 and 16 rows: each id must be the reference's argmax, or a logit within the two logits' bounds of it.
 */
async function checkLmHead(kernels: Kernels, v: LmHeadVariant, cfg: Qwen2Config): Promise<KernelCheckCase[]> {
  const { device } = kernels;
  const K = cfg.hiddenSize, N = Math.min(cfg.vocabSize, 4099);
  const rand = mulberry32(4000);
  const Wv = quantize(uniformF32(rand, N * K), "BF16");
  const W = gpuMatrix(device, "check lm_head", Wv, N, K, "BF16", { partRows: N > 2048 ? [2048, N - 2048] : undefined });
  const out: KernelCheckCase[] = [];
  try {
    for (const M of LINEAR_ROWS["linear.decode"]) {
      out.push(await run(`LM head K=${K} N=${N} in ${W.parts.length} parts + argmax, ${M} rows`, async () => {
        const xv = normalF32(rand, M * K);
        const x = uploadF32(device, xv, "x"), logits = uploadF32(device, new Float32Array(M * N), "logits");
        const next = uploadU32(device, new Uint32Array(M + 1).fill(7), "next");
        const op = new LmHead(kernels, x, W, logits, next, { linear: { decode: ROWS_DECODE, prefill: ROWS_PREFILL }, decode: v });
        try {
          await kernels.compiled();
          const rec = new Recorder(device);
          op.encode(rec, { T: M, outputs: M, keys: M, maxKeys: 1 });
          rec.submit();
          const got = await readU32(device, next, M + 1);
          const ref = linearRef(xv, Wv, K, N, [...Array(M).keys()], undefined, undefined, { dtype: "BF16" });
          let worst = 0;
          for (let m = 0; m < M; m++) {
            const row = ref.y.subarray(m * N, (m + 1) * N);
            let best = 0;
            for (let n = 1; n < N; n++) if (row[n] > row[best]) best = n;
            const id = got[m];
            if (id >= N) throw new Error(`row ${m}: id ${id} is not a row of the head`);
            const slack = ref.bound[m * N + id] + ref.bound[m * N + best];
            if (row[best] - row[id] > slack) throw new Error(`row ${m}: id ${id} (logit ${row[id]}) for the argmax ${best} (logit ${row[best]})`);
            worst = Math.max(worst, (row[best] - row[id]) / slack);
          }
          if (got[M] !== 7) throw new Error("the id past the outputs (must stay untouched) was written");
          return worst;
        } finally {
          op.destroy();
          for (const b of [x, logits, next]) b.destroy();
        }
      }));
    }
  } finally {
    W.parts.forEach((p) => p.buffer.destroy());
  }
  return out;
}

async function checkAttention(kernels: Kernels, v: AttentionVariant, cfg: Qwen2Config): Promise<KernelCheckCase[]> {
  const { device } = kernels;
  const d = { nHeads: cfg.numHeads, nKv: cfg.numKvHeads, headDim: cfg.headDim };
  // Decode: three sequences at their own contexts and slots; prefill: two prompts packed, the second after a prefix.
  const cases = v.slot === "attention.decode"
    ? [{ what: "decode of 3 sequences at contexts 1, 100, 700 in slots 1, 2, 0", seqs: [[1, 0, 1], [2, 99, 1], [0, 699, 1]] }]
    : [{ what: "prefill of 2 packed prompts: 5 tokens from 0 in slot 1, 40 after a prefix of 60 in slot 0", seqs: [[1, 0, 5], [0, 60, 40]] }];
  const out: KernelCheckCase[] = [];
  for (const [n, c] of cases.entries()) {
    out.push(await run(c.what, async () => {
      const seqs = c.seqs.map(([slot, start, rows]) => ({ slot, start, ids: new Uint32Array(rows) }));
      const T = seqs.reduce((s, q) => s + q.ids.length, 0);
      const [{ step, tokens }] = planSteps(seqs, T);
      const slots = Math.max(...seqs.map((s) => s.slot)) + 1;
      const slotLen = Math.max(...seqs.map((s) => s.start + s.ids.length)) + 16;
      const kvDim = d.nKv * d.headDim, qDim = d.nHeads * d.headDim;
      const rand = mulberry32(2000 + n);
      const q = normalF32(rand, T * qDim), kc = normalF32(rand, slots * slotLen * kvDim), vc = normalF32(rand, slots * slotLen * kvDim);
      // Rows no token may see hold large values, so that a causal-mask or cross-slot leak cannot hide.
      for (let slot = 0; slot < slots; slot++) {
        const used = Math.max(0, ...seqs.filter((s) => s.slot === slot).map((s) => s.start + s.ids.length));
        kc.fill(50, (slot * slotLen + used) * kvDim, (slot + 1) * slotLen * kvDim);
        vc.fill(1000, (slot * slotLen + used) * kvDim, (slot + 1) * slotLen * kvDim);
      }
      const { out: ref, bound } = attentionRef(q, kc, vc, tokens, slotLen, d);
      const b = { tokens: uploadU32(device, tokens, "tokens"), q: uploadF32(device, q, "q"), kCache: uploadF32(device, kc, "k cache"), vCache: uploadF32(device, vc, "v cache"), slotLen };
      const o = uploadF32(device, new Float32Array((T + 1) * qDim).fill(-7), "out");
      const op = new Attention(kernels, "check", b, o, d, { decode: v, prefill: v }, { maxTokens: Math.max(T, 256), maxKeys: slotLen });
      try {
        await kernels.compiled();
        const rec = new Recorder(device);
        op.encode(rec, step);
        rec.submit();
        const got = await readF32(device, o, (T + 1) * qDim);
        const { maxRatio } = assertClose(got.subarray(0, T * qDim), ref, (i) => bound[i], "output");
        assertClose(got.subarray(T * qDim), new Float32Array(qDim).fill(-7), 0, "the row past the output (must stay untouched)");
        return maxRatio;
      } finally {
        op.destroy();
        for (const buf of [b.tokens, b.q, b.kCache, b.vCache, o]) buf.destroy();
      }
    }));
  }
  return out;
}
