// Unit tests of every WGSL kernel against float64 references on the host, driven through the op
// classes of src/gpu/ops.ts as the model drives them. Inputs are seeded random float32 values (the
// references read the very same numbers), and sizes are chosen off the workgroup and tile sizes
// (64-wide workgroups, 32-row weight tiles and blocks, 4-row groups, 64-key attention blocks).
//
// Tolerances are worst-case float32 rounding bounds, with u = 2^-24 the unit roundoff:
// - a sum of n terms in any order is within (n - 1) u * sum |terms| (Higham's gamma_n bound, to
//   first order), so a dot product of length K with bias and accumulate adds is within
//   (K + 3) u * (sum |x w| + |bias| + |y0|);
// - WGSL's exp is accurate to (3 + 2|x|) ULP and inverseSqrt to 2 ULP;
// - gathers, copies and dtype widening are exact and compared bit for bit;
// - linear variants that compute in f16 (precision "f16") have their own bound, derived from f16's
//   precision at linearRef in test/gpu-helpers.ts; checkLinear picks the bound by the variant's precision.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BufferSet } from "../src/gpu/buffers.ts";
import type { Kernels, WeightDType } from "../src/gpu/kernel.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import {
  ATTENTION_VARIANTS, isSupported, LINEAR_VARIANTS, ROWS_DECODE, ROWS_PREFILL, type AttentionVariant, type LinearVariant,
  Argmax, Attention, Embedding, GatherRows, Linear, RmsNorm, RopeKv, sequenceStep, SwiGlu, widen, type AttentionDims, type Step, type StepOp,
} from "../src/ops/index.ts";
import { ropeTable } from "../src/model/rope.ts";
import {
  assertClose, attentionRef, encodeWeights, F32_ROUNDOFF, fromBf16Bits, fromF16Bits, gpuMatrix, linearRef, memoryTensor, memoryWeights,
  mulberry32, normalF32, quantize, readF32, readU32, testGpu, testKernels, uniformF32, upload, uploadF32, uploadU32, zeros,
} from "./gpu-helpers.ts";

const U = F32_ROUNDOFF;
const DTYPES: WeightDType[] = ["BF16", "F16", "F32"];

const { device } = await testGpu();
const k: Kernels = await testKernels();
/** Compiles what the ops asked for, records one step of them and submits it; read-backs queued after it see its results. */
async function run(ops: StepOp | StepOp[], step: Step): Promise<void> {
  await k.compiled();
  const rec = new Recorder(device);
  for (const op of [ops].flat()) op.encode(rec, step);
  rec.submit();
}

/** The token table of one sequence's step (slot 0): (position, slot) for positions pos0..pos0+T-1. */
function tokenRows(T: number, pos0: number): Uint32Array<ArrayBuffer> {
  return Uint32Array.from(Array.from({ length: T }, (_, t) => [pos0 + t, 0]).flat());
}

function tokenTable(T: number, pos0: number): GPUBuffer {
  return uploadU32(device, tokenRows(T, pos0), "tokens");
}

function assertBitsEqual(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < e.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${what}: element ${i} is ${actual[i]} (0x${a[i].toString(16)}), want ${expected[i]} (0x${e[i].toString(16)})`);
  }
}

// =============================================================================================
// widen: stored BF16/F16/F32 vector -> f32, exactly.

/** Values spanning the dtype's range: random magnitudes 2^[lo, hi], plus signed zeros, ±1, extremes. */
function widenInputs(dtype: WeightDType, n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const special = dtype === "F16"
    ? [0, -0, 1, -1, 65504, -65504, 2 ** -14, 2 ** -24, -(2 ** -24), 1023 * 2 ** -24, 0.1, 1 / 3]
    : [0, -0, 1, -1, 3.3895313892515355e38, -1e38, 2 ** -126, 1e-30, 0.1, 1 / 3, 65504, 123456789];
  const [lo, hi] = dtype === "F16" ? [-24, 15] : [-120, 120];
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = i < special.length ? special[i] : (rand() < 0.5 ? -1 : 1) * 2 ** (lo + (hi - lo) * rand());
  }
  return quantize(out, dtype);
}

async function widenDirect(dtype: WeightDType, values: Float32Array): Promise<Float32Array> {
  const raw = upload(device, encodeWeights(values, dtype), "widen raw");
  const out = zeros(device, values.length, "widen out");
  const rec = new Recorder(device);
  await widen(k, rec, "v", dtype, raw, out, values.length / 2);
  rec.submit();
  return readF32(device, out, values.length);
}

for (const dtype of DTYPES) {
  test(`widen ${dtype}: 150 values (75 pairs, not a multiple of 64) via the widen kernel, bit-exact`, async () => {
    const values = widenInputs(dtype, 150, 11);
    assertBitsEqual(await widenDirect(dtype, values), values, `widen ${dtype}`);
  });

  test(`widen ${dtype}: 898-element vector loaded by SafetensorsWeights.vector, bit-exact`, async () => {
    const values = widenInputs(dtype, 898, 12);
    const weights = memoryWeights(k, device.limits.maxStorageBufferBindingSize, memoryTensor("v", dtype, [898], encodeWeights(values, dtype)));
    const buf = await weights.vector("v", [{ name: "v", size: 898 }]);
    await weights.finish();
    assertBitsEqual(await readF32(device, buf, 898), values, `loaded ${dtype} vector`);
  });
}

test("widen host helpers: bf16/f16 rounding is nearest-even and round-trips", () => {
  // Sanity of the test's own encoders, since every weight reference depends on them.
  assert.equal(fromBf16Bits(0x3f80), 1);
  assert.equal(fromF16Bits(0x3c00), 1);
  assert.deepEqual([...quantize([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20], "BF16")], [1, 1 + 2 ** -6, 1 + 2 ** -7]);
  assert.deepEqual([...quantize([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 65520, 2 ** -25, 3 * 2 ** -26], "F16")],
    [1, 1 + 2 ** -9, 65504, Infinity, 0, 2 ** -24]);
});

// =============================================================================================
// Embedding: x[t] = table[ids[t]], table split by rows into parts.

function embeddingRef(table: Float32Array, H: number, ids: number[]): Float32Array {
  const x = new Float32Array(ids.length * H);
  ids.forEach((id, t) => x.set(table.subarray(id * H, (id + 1) * H), t * H));
  return x;
}

async function checkEmbedding(dtype: WeightDType, V: number, H: number, partRows: number[], ids: number[], seed: number,
  reverseParts = false) {
  const rand = mulberry32(seed);
  const table = quantize(normalF32(rand, V * H), dtype);
  const W = gpuMatrix(device, "embed", table, V, H, dtype, { partRows });
  if (reverseParts) W.parts.reverse();
  const T = ids.length;
  const sentinel = new Float32Array((T + 1) * H).fill(-12345);
  const x = uploadF32(device, sentinel, "x");
  const op = new Embedding(k, uploadU32(device, ids, "ids"), W, x);
  await run(op, sequenceStep(T, 0));
  const got = await readF32(device, x, sentinel.length);
  assertBitsEqual(got.subarray(0, T * H), embeddingRef(table, H, ids), `embedding ${dtype}`);
  assertBitsEqual(got.subarray(T * H), sentinel.subarray(T * H), "rows past T untouched");
}

test("Embedding BF16: V=50 split 17/8/25 rows, H=94, T=45 ids with first/last row and part edges", async () => {
  const rand = mulberry32(21);
  const ids = [0, 49, 16, 17, 24, 25, 0, 49, 3];
  while (ids.length < 45) ids.push(Math.floor(rand() * 50));
  await checkEmbedding("BF16", 50, 94, [17, 8, 25], ids, 22);
});

test("Embedding BF16: parts dispatched last-first (each part must write only its own rows), T=45", async () => {
  const rand = mulberry32(25);
  const ids = [0, 49, 16, 17, 24, 25];
  while (ids.length < 45) ids.push(Math.floor(rand() * 50));
  await checkEmbedding("BF16", 50, 94, [17, 8, 25], ids, 26, true);
});

test("Embedding BF16: T=1 decode, last row of the last part", async () => {
  await checkEmbedding("BF16", 50, 94, [17, 8, 25], [49], 23);
});

for (const dtype of ["F16", "F32"] as const) {
  test(`Embedding ${dtype}: H=258 (129 pairs, 3 workgroups per row), 2 parts 30/11, T=7`, async () => {
    await checkEmbedding(dtype, 41, 258, [30, 11], [40, 0, 29, 30, 7, 40, 12], 24);
  });
}

// =============================================================================================
// RmsNorm: y = x / sqrt(mean(x^2) + eps) * w.
// Each output is x_i * inv * w_i; inv carries the f32 sum-of-squares error (<= (H/64 + 7) u
// relative, strided then tree summation; halved by the square root) plus 2 ULP of inverseSqrt, and
// the two products add 2u: under 20u ~ 1.2e-6 relative for H <= 896, so rtol 1e-5 is safe.

function rmsNormRef(x: Float32Array, w: Float32Array, rows: number, H: number, eps: number): Float64Array {
  const y = new Float64Array(rows * H);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[r * H + i] ** 2;
    const inv = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) y[r * H + i] = x[r * H + i] * inv * w[i];
  }
  return y;
}

for (const H of [94, 896]) {
  for (const rows of [1, 45]) {
    test(`RmsNorm: rows=${rows}, H=${H}, eps=1e-6${rows > 1 ? " (row scales 1e-4..74, a zero row)" : ""}`, async () => {
      const rand = mulberry32(31 + H + rows);
      const eps = 1e-6;
      const x = normalF32(rand, rows * H);
      // Rows of very different magnitudes; a row near sqrt(eps) makes eps matter; an all-zero row.
      for (let r = 0; r < rows; r++) {
        const scale = rows === 1 ? 3 : r === 5 ? 0 : r === 6 ? 1e-3 : 10 ** (-4 + (6 * r) / rows);
        for (let i = 0; i < H; i++) x[r * H + i] = Math.fround(x[r * H + i] * scale);
      }
      const w = Float32Array.from(normalF32(rand, H, 0.2), (v) => 1 + v);
      const y = zeros(device, rows * H, "y");
      const op = new RmsNorm(k, "test", uploadF32(device, x), uploadF32(device, w), y, H, eps);
      await run(op, sequenceStep(rows, 0));
      const ref = rmsNormRef(x, w, rows, H, eps);
      assertClose(await readF32(device, y, rows * H), ref, (i) => 1e-5 * Math.abs(ref[i]) + 1e-30, `rmsnorm rows=${rows} H=${H}`);
    });
  }
}

// =============================================================================================
// Linear: y (+)= x W^T + bias, prefill (T > 1) and decode (T = 1, or one gathered row) pipelines.

interface LinearCase {
  dtype: WeightDType;
  K: number;
  N: number;
  T: number;
  bias?: boolean;
  accumulate?: boolean;
  lastRowOnly?: boolean;
  maxPartRows?: number;
  seed: number;
}

async function checkLinear(c: LinearCase, variant: LinearVariant): Promise<void> {
  const { dtype, K, N, T } = c;
  const rand = mulberry32(c.seed);
  const Wv = quantize(uniformF32(rand, N * K, -1, 1), dtype);
  const xv = normalF32(rand, T * K);
  const biasV = c.bias ? normalF32(rand, N) : undefined;
  const outRows = c.lastRowOnly || T === 1 ? 1 : T;
  // y has a spare row past the written ones; its initial values must survive.
  const y0 = normalF32(rand, (outRows + 1) * N, 2);
  const W = gpuMatrix(device, "W", Wv, N, K, dtype, { maxPartRows: c.maxPartRows });
  const y = uploadF32(device, y0, "y");
  // The LM head's path: the step's output row (the last) gathered, then a linear of one row per output.
  const x = uploadF32(device, xv, "x");
  const gathered = c.lastRowOnly ? zeros(device, K, "gathered row") : undefined;
  const ops: StepOp[] = gathered ? [new GatherRows(k, x, uploadU32(device, [T - 1]), gathered, K)] : [];
  ops.push(new Linear(k, gathered ?? x, W, y, {
    variants: { decode: variant, prefill: variant }, bias: biasV && uploadF32(device, biasV, "bias"), accumulate: c.accumulate, perOutput: c.lastRowOnly,
  }));
  await run(ops, c.lastRowOnly ? { ...sequenceStep(T, 0), outputs: 1 } : sequenceStep(T, 0));
  const got = await readF32(device, y, y0.length);
  const xRows = c.lastRowOnly ? [T - 1] : Array.from({ length: outRows }, (_, m) => m);
  const { y: ref, bound } = linearRef(xv, Wv, K, N, xRows, biasV, c.accumulate ? y0 : undefined, { precision: variant.precision, dtype });
  const what = `linear ${variant.slot}=${variant.name} ${dtype} T=${T} K=${K} N=${N}`;
  assertClose(got.subarray(0, outRows * N), ref, (i) => bound[i], what);
  assertBitsEqual(got.subarray(outRows * N), y0.subarray(outRows * N), `${what}: rows past the output untouched`);
}

// Every variant of the linear family, in both of its slots' roles: decode variants serve any rows too.
for (const v of LINEAR_VARIANTS.filter((x) => isSupported(x, device))) {
const name = `${v.slot}=${v.name}`;
for (const dtype of DTYPES) {
  for (const [bias, accumulate] of [[false, false], [true, false], [false, true], [true, true]]) {
    const opts = `${bias ? "bias" : "no bias"}, ${accumulate ? "accumulate" : "overwrite"}`;
    test(`Linear[${name}] ${dtype} prefill: T=37 K=94 N=53, W split 20/20/13 rows, ${opts}`, async () => {
      await checkLinear({ dtype, K: 94, N: 53, T: 37, bias, accumulate, maxPartRows: 20, seed: 41 }, v);
    });
    test(`Linear[${name}] ${dtype} decode: T=1 K=94 N=53, W split 20/20/13 rows, ${opts}`, async () => {
      await checkLinear({ dtype, K: 94, N: 53, T: 1, bias, accumulate, maxPartRows: 20, seed: 42 }, v);
    });
  }
  test(`Linear[${name}] ${dtype} gather of row 36: T=37 reads row 36 only, writes y row 0, K=94 N=53 one part, bias`, async () => {
    await checkLinear({ dtype, K: 94, N: 53, T: 37, bias: true, lastRowOnly: true, seed: 43 }, v);
  });
}

test(`Linear[${name}] BF16 prefill: long dot products, T=45 K=896 N=70 (partial row and column tiles), bias, accumulate`, async () => {
  await checkLinear({ dtype: "BF16", K: 896, N: 70, T: 45, bias: true, accumulate: true, seed: 44 }, v);
});

test(`Linear[${name}] BF16 decode: long dot products, T=1 K=896 N=151, split 100/51`, async () => {
  await checkLinear({ dtype: "BF16", K: 896, N: 151, T: 1, bias: true, maxPartRows: 100, seed: 45 }, v);
});

test(`Linear[${name}] F16 prefill: T=2 (smallest prefill), K=2, N=5`, async () => {
  await checkLinear({ dtype: "F16", K: 2, N: 5, T: 2, seed: 46 }, v);
});

test(`Linear[${name}] BF16 gather of the last row: a part of 262147 rows (over 65535 workgroups of 4 rows: 2-D grid), K=4, N=270001 split 262147/7854`, async () => {
  await checkLinear({ dtype: "BF16", K: 4, N: 270001, T: 3, lastRowOnly: true, maxPartRows: 262147, seed: 47 }, v);
});

test(`Linear[${name}] F16: W loaded by SafetensorsWeights.matrix with a binding limit of 32 rows (4 parts), T=5 and T=1`, async () => {
  const rand = mulberry32(48);
  const K = 30, N = 100, dtype = "F16";
  const Wv = quantize(uniformF32(rand, N * K), dtype);
  const rowBytes = Math.ceil(K / 8) * 8 * 2;
  const weights = memoryWeights(k, 32 * rowBytes, memoryTensor("W", dtype, [N, K], encodeWeights(Wv, dtype)));
  const W = await weights.matrix("W", [{ name: "W", size: N }], K);
  await weights.finish();
  assert.deepEqual(W.parts.map((part) => part.rows), [32, 32, 32, 4]);
  const xv = normalF32(rand, 5 * K);
  const y = zeros(device, 5 * N, "y");
  const op = new Linear(k, uploadF32(device, xv), W, y, { variants: { decode: v, prefill: v } });
  for (const T of [5, 1]) {
    await run(op, sequenceStep(T, 0));
    const { y: ref, bound } = linearRef(xv, Wv, K, N, Array.from({ length: T }, (_, m) => m), undefined, undefined, { precision: v.precision, dtype });
    assertClose(await readF32(device, y, T * N), ref, (i) => bound[i], `uploaded linear T=${T}`);
  }
});
}

test("Stacked weights: three BF16 tensors of 40, 10 and 22 rows as one matrix in parts of 32 rows, and their biases end to end", async () => {
  const rand = mulberry32(49);
  const K = 30, sizes = [40, 10, 22], dtype = "BF16";
  const tensors = sizes.map((rows, i) => ({ name: `t${i}`, values: quantize(uniformF32(rand, rows * K), dtype), bias: quantize(normalF32(rand, rows), dtype) }));
  const rowBytes = Math.ceil(K / 8) * 8 * 2;
  const weights = memoryWeights(k, 32 * rowBytes,
    ...tensors.map((t, i) => memoryTensor(t.name, dtype, [sizes[i], K], encodeWeights(t.values, dtype))),
    ...tensors.map((t, i) => memoryTensor(`${t.name}.bias`, dtype, [sizes[i]], encodeWeights(t.bias, dtype))));
  const W = await weights.matrix("stack", tensors.map((t, i) => ({ name: t.name, size: sizes[i] })), K);
  const bias = await weights.vector("stack.bias", tensors.map((t, i) => ({ name: `${t.name}.bias`, size: sizes[i] })));
  await weights.finish();
  assert.deepEqual([W.rows, ...W.parts.map((part) => part.rows)], [72, 32, 32, 8]);
  // The stack is the tensors' rows in order: check it through a linear layer against the concatenation.
  const Wv = new Float32Array(72 * K);
  let at = 0;
  for (const t of tensors) { Wv.set(t.values, at); at += t.values.length; }
  const biasV = Float32Array.from(tensors.flatMap((t) => [...t.bias]));
  assertBitsEqual(await readF32(device, bias, 72), biasV, "stacked bias");
  const xv = normalF32(rand, 3 * K);
  const y = zeros(device, 3 * 72, "y");
  await run(new Linear(k, uploadF32(device, xv), W, y, { variants: { decode: ROWS_DECODE, prefill: ROWS_PREFILL }, bias }), sequenceStep(3, 0));
  const { y: ref, bound } = linearRef(xv, Wv, K, 72, [0, 1, 2], biasV, undefined);
  assertClose(await readF32(device, y, 3 * 72), ref, (i) => bound[i], "stacked linear");
});

test("Stacked weights of two dtypes are refused, naming both tensors", async () => {
  const weights = memoryWeights(k, device.limits.maxStorageBufferBindingSize,
    memoryTensor("a", "BF16", [4, 8], new Uint8Array(64)), memoryTensor("b", "F16", [4, 8], new Uint8Array(64)));
  await assert.rejects(weights.matrix("a+b", [{ name: "a", size: 4 }, { name: "b", size: 4 }], 8), /tensor "b" is F16 but "a" is BF16: a\+b stacks them in one buffer/);
});

// =============================================================================================
// RopeKv: q rotated in place; k rotated into k_cache[pos]; v copied into v_cache[pos].

/**
 * HF's apply_rotary_pos_emb for one head vector at position pos: x * cos + rotate_half(x) * sin,
 * with cos/sin [D] = cat(freqs, freqs) taken from the engine's (cos, sin) table, in float64.
 * Returns the rotated vector and the per-element error bound 4u (|x cos| + |rotate_half(x) sin|)
 * for the GPU's two f32 products and one add.
 */
function rotateHalfRef(x: ArrayLike<number>, table: Float32Array, pos: number, D: number) {
  const half = D / 2;
  const cos = new Float64Array(D), sin = new Float64Array(D), rot = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    cos[j] = table[(pos * half + (j % half)) * 2];
    sin[j] = table[(pos * half + (j % half)) * 2 + 1];
    rot[j] = j < half ? -x[j + half] : x[j - half];
  }
  const out = new Float64Array(D), bound = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    out[j] = x[j] * cos[j] + rot[j] * sin[j];
    bound[j] = 4 * U * (Math.abs(x[j] * cos[j]) + Math.abs(rot[j] * sin[j])) + 1e-30;
  }
  return { out, bound };
}

async function checkRopeKv(D: number, T: number, pos0: number, seed: number): Promise<void> {
  const d: AttentionDims = { nHeads: 6, nKv: 2, headDim: D };
  const positions = 1100;
  const kvDim = d.nKv * D;
  const rand = mulberry32(seed);
  const q = normalF32(rand, T * d.nHeads * D), kk = normalF32(rand, T * kvDim), v = normalF32(rand, T * kvDim);
  const table = ropeTable(D, 1e6, positions);
  // Caches start with random contents: rows outside pos0..pos0+T-1 must keep them.
  const kc0 = normalF32(rand, positions * kvDim), vc0 = normalF32(rand, positions * kvDim);
  // The stacked projection's rows: q heads, then k heads, then v heads of each token.
  const qkv = new Float32Array(T * (d.nHeads * D + 2 * kvDim));
  for (let t = 0; t < T; t++) {
    const row = t * (d.nHeads * D + 2 * kvDim);
    qkv.set(q.subarray(t * d.nHeads * D, (t + 1) * d.nHeads * D), row);
    qkv.set(kk.subarray(t * kvDim, (t + 1) * kvDim), row + d.nHeads * D);
    qkv.set(v.subarray(t * kvDim, (t + 1) * kvDim), row + d.nHeads * D + kvDim);
  }
  const qBuf = zeros(device, q.length, "q"), kc = uploadF32(device, kc0), vc = uploadF32(device, vc0);
  const b = { tokens: tokenTable(T, pos0), qkv: uploadF32(device, qkv), q: qBuf, kCache: kc, vCache: vc, slotLen: positions };
  const op = new RopeKv(k, "test", b, upload(device, table), d);
  await run(op, sequenceStep(T, pos0));

  const qRef = new Float64Array(q.length), qBound = new Float64Array(q.length);
  const kcRef = Float64Array.from(kc0), kcBound = new Float64Array(kc0.length);
  const vcRef = Float32Array.from(vc0);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < d.nHeads; h++) {
      const at = (t * d.nHeads + h) * D;
      const { out, bound } = rotateHalfRef(q.subarray(at, at + D), table, pos0 + t, D);
      qRef.set(out, at);
      qBound.set(bound, at);
    }
    for (let h = 0; h < d.nKv; h++) {
      const src = (t * d.nKv + h) * D, dst = ((pos0 + t) * d.nKv + h) * D;
      const { out, bound } = rotateHalfRef(kk.subarray(src, src + D), table, pos0 + t, D);
      kcRef.set(out, dst);
      kcBound.set(bound, dst);
      vcRef.set(v.subarray(src, src + D), dst);
    }
  }
  const what = `rope_kv D=${D} T=${T} pos0=${pos0}`;
  assertClose(await readF32(device, qBuf, q.length), qRef, (i) => qBound[i], `${what}: q`);
  // Untouched cache rows have bound 0: they must be bit-identical.
  assertClose(await readF32(device, kc, kc0.length), kcRef, (i) => kcBound[i], `${what}: k cache`);
  assertBitsEqual(await readF32(device, vc, vc0.length), vcRef, `${what}: v cache`);
}

for (const D of [16, 64, 128]) {
  for (const [T, pos0] of [[1, 0], [45, 0], [1, 1000], [45, 1000]]) {
    test(`RopeKv: GQA 6 q / 2 kv heads, D=${D}, T=${T}, pos0=${pos0}`, async () => {
      await checkRopeKv(D, T, pos0, 51 + D + T + pos0);
    });
  }
}

test("RopeKv: D=256 (half_d 128 > one workgroup), T=7, pos0=1093 (last table rows)", async () => {
  await checkRopeKv(256, 7, 1093, 52);
});

// =============================================================================================
// Attention: out[t, h] = softmax_j(q[t,h] . k[j, h/g] / sqrt(D)) v[j, h/g] for j <= pos0 + t.

interface AttentionCase {
  d: AttentionDims;
  T: number;
  pos0: number;
  seed: number;
  /** Standard deviation of q and k entries (the scores' spread is about qkStd^2). */
  qkStd?: number;
  /** Overrides the random caches/queries (for structured score patterns). */
  shape?: (q: Float32Array, kc: Float32Array, vc: Float32Array) => void;
}

async function checkAttention(c: AttentionCase, variant: AttentionVariant): Promise<void> {
  const { d, T, pos0 } = c;
  const rand = mulberry32(c.seed);
  const kvDim = d.nKv * d.headDim, used = pos0 + T;
  const positions = used + 70; // cache rows past the last query's position, never to be read
  const q = normalF32(rand, T * d.nHeads * d.headDim, c.qkStd ?? 1);
  const kc = normalF32(rand, positions * kvDim, c.qkStd ?? 1);
  const vc = normalF32(rand, positions * kvDim);
  c.shape?.(q, kc, vc);
  // Future positions hold large values: any causal-mask leak would dominate the output.
  kc.fill(50, used * kvDim);
  vc.fill(1000, used * kvDim);
  const out = uploadF32(device, new Float32Array((T + 1) * d.nHeads * d.headDim).fill(-7), "out");
  const b = { tokens: tokenTable(T, pos0), q: uploadF32(device, q), kCache: uploadF32(device, kc), vCache: uploadF32(device, vc), slotLen: positions };
  const op = new Attention(k, "test", b, out, d, { decode: variant, prefill: variant }, { maxTokens: T, maxKeys: positions });
  await run(op, sequenceStep(T, pos0));
  const got = await readF32(device, out, (T + 1) * d.nHeads * d.headDim);
  const { out: ref, bound } = attentionRef(q, kc, vc, tokenRows(T, pos0), positions, d);
  const n = T * d.nHeads * d.headDim;
  assertClose(got.subarray(0, n), ref, (i) => bound[i], `attention ${variant.slot}=${variant.name} D=${d.headDim} T=${T} pos0=${pos0}`);
  assert.ok(got.subarray(n).every((x) => x === -7), "out rows past T untouched");
}

// Every attention variant, at decode and at prefill shapes alike.
for (const v of ATTENTION_VARIANTS.filter((x) => isSupported(x, device))) {
const name = `${v.slot}=${v.name}`;
test(`Attention[${name}]: decode T=1 at pos0=1100 (1101 keys, 18 blocks of 64), GQA 6/2, D=64`, async () => {
  await checkAttention({ d: { nHeads: 6, nKv: 2, headDim: 64 }, T: 1, pos0: 1100, seed: 61 }, v);
});

test(`Attention[${name}]: decode T=1 at pos0=1100, Qwen2.5-0.5B heads 14/2, D=64, peaky scores (std ~16)`, async () => {
  await checkAttention({ d: { nHeads: 14, nKv: 2, headDim: 64 }, T: 1, pos0: 1100, seed: 62, qkStd: 4 }, v);
});

test(`Attention[${name}]: prefill T=45 at pos0=0, GQA 6/2, D=64`, async () => {
  await checkAttention({ d: { nHeads: 6, nKv: 2, headDim: 64 }, T: 45, pos0: 0, seed: 63 }, v);
});

for (const D of [16, 64, 128]) {
  test(`Attention[${name}]: chunk T=7 at pos0=20, GQA 6/2, D=${D}`, async () => {
    await checkAttention({ d: { nHeads: 6, nKv: 2, headDim: D }, T: 7, pos0: 20, seed: 64 + D }, v);
  });
}

test(`Attention[${name}]: D=256 (4 output dims per lane), T=3 at pos0=70, GQA 4/1`, async () => {
  await checkAttention({ d: { nHeads: 4, nKv: 1, headDim: 256 }, T: 3, pos0: 70, seed: 65 }, v);
});

test(`Attention[${name}]: T=45 at pos0=100 (keys cross block edges per query), MHA 3/3, D=128, peaky scores (std ~25)`, async () => {
  await checkAttention({ d: { nHeads: 3, nKv: 3, headDim: 128 }, T: 45, pos0: 100, seed: 66, qkStd: 5 }, v);
});

/**
 * Every query and key along one direction, so key j scores peak * j / (used - 1) (rising) or
 * peak * (1 - j / (used - 1)) (falling) for positions j < used.
 */
function alignedScores(rising: boolean, peak: number, d: AttentionDims, used: number) {
  const D = d.headDim, c = Math.sqrt(peak) / D ** 0.25; // (c * c) * D / sqrt(D) = peak
  return (q: Float32Array, kc: Float32Array) => {
    for (let i = 0; i < q.length; i++) q[i] = Math.fround(c * (i % 2 ? 1 : -1));
    for (let j = 0; j < used; j++) {
      const f = rising ? j / (used - 1) : 1 - j / (used - 1);
      for (let e = 0; e < d.nKv * D; e++) kc[j * d.nKv * D + e] = Math.fround(f * c * (e % 2 ? 1 : -1));
    }
  };
}

for (const rising of [true, false]) {
  const how = rising ? "rising 0 -> +2000 (every block a new max)" : "falling +2000 -> 0 (first key wins)";
  test(`Attention[${name}] stability: T=1 pos0=300, scores ${how}, D=64`, async () => {
    const d = { nHeads: 2, nKv: 1, headDim: 64 }, T = 1, pos0 = 300;
    await checkAttention({ d, T, pos0, seed: 67, shape: alignedScores(rising, 2000, d, pos0 + T) }, v);
  });
}

test(`Attention[${name}] stability: all scores hugely negative (~ -3000) with spread, T=5 pos0=130, D=64`, async () => {
  const d = { nHeads: 2, nKv: 1, headDim: 64 }, T = 5, pos0 = 130;
  await checkAttention({
    d, T, pos0, seed: 68,
    shape: (q, kc) => {
      // Scores q.k / sqrt(D) = -3000 plus a spread of a few units: the softmax must subtract the
      // true (negative) maximum, whatever the running max starts from.
      const D = 64, c = Math.sqrt(3000 * 8 / D);
      for (let i = 0; i < q.length; i++) q[i] = c;
      const r = mulberry32(69);
      for (let i = 0; i < (pos0 + T) * D; i++) kc[i] = Math.fround(-c + 0.3 * (r() - 0.5));
    },
  }, v);
});
}

// =============================================================================================
// SwiGlu: gate = silu(gate) * up.
// exp(-g) is within (3 + 2|g|) ULP; 1 + e, the division and the product add 3u: the relative
// error of each output is <= (6 + 2|g|) u (doubled below for the second-order terms).

function swigluRef(g: Float32Array, u: Float32Array): Float64Array {
  return Float64Array.from(g, (x, i) => (x / (1 + Math.exp(-x))) * u[i]);
}

async function checkSwiGlu(T: number, width: number, seed: number): Promise<void> {
  const rand = mulberry32(seed);
  const n = T * width;
  const g = uniformF32(rand, n, -20, 20), u = uniformF32(rand, n, -20, 20);
  g.set([0, 20, -20, 1e-3, -1e-3].map(Math.fround), 0);
  // The stacked gate/up projection's rows: width gate outputs, then width up outputs, per token.
  const gateUp = new Float32Array(2 * n);
  for (let t = 0; t < T; t++) {
    gateUp.set(g.subarray(t * width, (t + 1) * width), 2 * t * width);
    gateUp.set(u.subarray(t * width, (t + 1) * width), (2 * t + 1) * width);
  }
  const sentinel = new Float32Array(n + 5).fill(-12345);
  const out = uploadF32(device, sentinel, "out");
  await run(new SwiGlu(k, uploadF32(device, gateUp), out, width), sequenceStep(T, 0));
  const got = await readF32(device, out, sentinel.length);
  const ref = swigluRef(g, u);
  assertClose(got.subarray(0, n), ref, (i) => 2 * (6 + 2 * Math.abs(g[i])) * U * Math.abs(ref[i]) + 1e-35, `swiglu n=${n}`);
  assertBitsEqual(got.subarray(n), sentinel.subarray(n), "elements past n untouched");
}

test("SwiGlu: T=3 rows of width 1000 (n=3000, not a multiple of 64), values in [-20, 20]", async () => {
  await checkSwiGlu(3, 1000, 71);
});

test("SwiGlu: T=1, width 37 (one partial workgroup)", async () => {
  await checkSwiGlu(1, 37, 72);
});

test("SwiGlu: n = 3 x 1398100 > 65535*64 elements (2-D grid), values in [-20, 20]", async () => {
  await checkSwiGlu(3, 1398100, 73);
});

// =============================================================================================
// Argmax: index of the largest logit, lowest index on ties.

function argmaxRef(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

async function checkArgmax(logits: Float32Array, what: string): Promise<void> {
  const out = uploadU32(device, [0xdead, 0xbeef], "out");
  await run(new Argmax(k, uploadF32(device, logits), out, logits.length), sequenceStep(1, 0));
  const [idx, next] = await readU32(device, out, 2);
  assert.equal(idx, argmaxRef(logits), what);
  assert.equal(next, 0xbeef, `${what}: out[1] untouched`);
}

for (const n of [151936, 7919]) {
  test(`Argmax: ${n} random logits (normal, std 3)`, async () => {
    await checkArgmax(normalF32(mulberry32(81 + n), n, 3), `argmax n=${n}`);
  });

  test(`Argmax: ${n} logits with tied maxima in several lanes and in one lane's slice -> lowest index`, async () => {
    const x = normalF32(mulberry32(82 + n), n, 3);
    // 1000 and 1256 fall in the same invocation's strided slice; the others in different lanes.
    for (const i of [n - 1, 5000, 1256, 1000, 4321]) x[i] = 100; // far above the random values
    await checkArgmax(x, `argmax ties n=${n}`);
    assert.equal(argmaxRef(x), 1000);
  });

  test(`Argmax: ${n} all-negative logits in [-1000, -1]`, async () => {
    await checkArgmax(uniformF32(mulberry32(83 + n), n, -1000, -1), `argmax negative n=${n}`);
  });

  test(`Argmax: ${n} hugely negative logits in [-1e38, -1e30]`, async () => {
    await checkArgmax(uniformF32(mulberry32(86 + n), n, -1e38, -1e30), `argmax hugely negative n=${n}`);
  });
}

test("Argmax: maximum at the first and at the last index", async () => {
  const x = uniformF32(mulberry32(84), 7919, -5, 5);
  x[0] = 6;
  await checkArgmax(x, "argmax first");
  x[7918] = 7;
  await checkArgmax(x, "argmax last");
});

test("Argmax: all logits equal (-3.5) -> 0; n=100 (< 256 lanes, idle lanes)", async () => {
  await checkArgmax(new Float32Array(7919).fill(-3.5), "argmax all equal");
  await checkArgmax(uniformF32(mulberry32(85), 100, -50, -40), "argmax n=100");
});
