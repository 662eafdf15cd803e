// Weights quantized at load. The host's quantization of a group (src/model/quant.ts) against the definitions of
// GGUF's Q8_0 and Q4_0 in exact arithmetic; the load-time kernel (shaders/quantize.wgsl) against the host's, bit for
// bit, from BF16, F16 and F32 sources at real and odd shapes, through the weight sources the loader uses
// (safetensors streamed into parts, stacked tensors, seeded random weights); values that cannot be quantized
// refused by name; the bytes of the published shapes' weights per mode.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BufferSet } from "../src/gpu/buffers.ts";
import type { QuantDType, WeightDType } from "../src/gpu/kernel.ts";
import { layoutBytes, planParts, type GpuMatrix } from "../src/gpu/matrix.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { quantize as quantizeOnGpu } from "../src/ops/quantize.ts";
import type { Qwen2Config } from "../src/model/config.ts";
import { QUANT_GROUP, quantizeGroup, quantizedDType, scaleValue, type Quantization } from "../src/model/quant.ts";
import { loadQwen2Weights } from "../src/model/qwen2-weights.ts";
import { QWEN25_SHAPES } from "../src/model/shapes.ts";
import { randomMatrixBf16 } from "../src/model/random-host.ts";
import { RandomWeights, type WeightSource } from "../src/model/weights.ts";
import {
  encodeWeights, fromBf16Bits, fromF16Bits, layoutQuantized, memoryTensor, memoryWeights, mulberry32, normalF32, quantize,
  readBytes, readU32, testGpu, testKernels, toF16Bits, upload, zeros,
} from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
const QUANT: QuantDType[] = ["Q8", "Q4"];

// ---------------------------------------------------------------------------------------------
// The host's groups against the formats' definitions

/**
 * Q8_0 and Q4_0 as llama.cpp defines them (d = amax / 127 or m / -8 as an f16, the integer nearest x / d), in
 * float64, where every quotient's rounding is settled by an exact product: the integers r3gpu must produce.
 */
function definition(x: Float32Array, dtype: QuantDType): { d: number; ints: number[] } {
  let m = 0;
  for (const v of x) if (Math.abs(v) > Math.abs(m)) m = v;
  if (m === 0) return { d: 0, ints: [...x].map(() => (dtype === "Q8" ? 0 : 8)) };
  const raw = dtype === "Q8" ? Math.fround(Math.abs(m) * Math.fround(1 / 127)) : -m / 8;
  // f16, kept at least 2^-14 in magnitude (src/model/quant.ts).
  const d = Math.sign(raw) * Math.max(fromF16Bits(toF16Bits(Math.abs(raw))), 2 ** -14);
  const round = (q: number) => {
    let c = Math.floor(q / Math.abs(d) + 0.5);
    // (c +- 1/2) |d| is exact in float64: settle the guess.
    if (q >= (c + 0.5) * Math.abs(d)) c++;
    else if (q < (c - 0.5) * Math.abs(d)) c--;
    return c;
  };
  if (dtype === "Q8") return { d, ints: [...x].map((v) => Math.sign(v) * Math.min(round(Math.abs(v)), 127) || 0) };
  return { d, ints: [...x].map((v) => Math.min(Math.max(round(d < 0 ? -v : v) + 8, 0), 15)) };
}

function group(values: number[]): Float32Array {
  const x = new Float32Array(QUANT_GROUP);
  x.set(values.slice(0, QUANT_GROUP));
  return x;
}

test("quantizeGroup: random groups of every magnitude match Q8_0 and Q4_0 as defined", () => {
  const rand = mulberry32(1);
  for (let n = 0; n < 2000; n++) {
    const scale = 2 ** (-30 + 45 * rand());
    const x = Float32Array.from(normalF32(rand, QUANT_GROUP), (v) => v * scale);
    for (const dtype of QUANT) {
      const out = new Int8Array(QUANT_GROUP);
      const got = quantizeGroup(x, dtype, out);
      const want = definition(x, dtype);
      assert.ok(got.ok, `${dtype} group ${n}`);
      assert.equal(scaleValue(got.scale), want.d, `${dtype} group ${n}: scale`);
      assert.deepEqual([...out], want.ints, `${dtype} group ${n}: integers`);
    }
  }
});

test("quantizeGroup: ties round half away from zero (Q8) and half up (Q4); the largest magnitude first on ties", () => {
  const q = new Int8Array(QUANT_GROUP);
  // amax 127: d = f16(127 x f32(1/127)) = 1.
  let g = quantizeGroup(group([127, 2.5, -2.5, 0.5, -0.5, 126.5, -0]), "Q8", q);
  assert.equal(scaleValue(g.scale), 1);
  assert.deepEqual([...q.slice(0, 7)], [127, 3, -3, 1, -1, 127, 0]);
  // m = 8 (first of 8 and -8): d = -1, x / d = -x rounded half up, plus 8.
  g = quantizeGroup(group([8, -8, 2.5, -2.5, 0.5, 7.5, -7.5]), "Q4", q);
  assert.equal(scaleValue(g.scale), -1);
  assert.deepEqual([...q.slice(0, 7)], [0, 15, 6, 11, 8, 1, 15]);
  // m = -8 first: d = 1, so -8 is n = 0 and 8 clamps to 15.
  g = quantizeGroup(group([-8, 8, 2.5]), "Q4", q);
  assert.equal(scaleValue(g.scale), 1);
  assert.deepEqual([...q.slice(0, 3)], [0, 15, 11]);
});

test("quantizeGroup: zeros, tiny scales raised to 2^-14, and what cannot be quantized", () => {
  const q = new Int8Array(QUANT_GROUP);
  assert.deepEqual(quantizeGroup(group([]), "Q8", q), { scale: 0, ok: true });
  assert.deepEqual(quantizeGroup(group([]), "Q4", q), { scale: 0, ok: true });
  assert.deepEqual([...q], new Array(QUANT_GROUP).fill(8));
  // max 1e-4: d would be 7.9e-7, an f16 subnormal; 2^-14 instead, so 1e-4 is 2 (1.64 rounded).
  let g = quantizeGroup(group([1e-4, -5e-5, 1e-40]), "Q8", q);
  assert.equal(scaleValue(g.scale), 2 ** -14);
  assert.deepEqual([...q.slice(0, 3)], [2, -1, 0]);
  g = quantizeGroup(group([3e-45]), "Q4", q);
  assert.equal(scaleValue(g.scale), -(2 ** -14));
  assert.equal(q[0], 8);
  for (const [values, dtype] of [[[1, NaN], "Q8"], [[Infinity], "Q4"], [[-9e6], "Q8"], [[6e5], "Q4"]] as const) {
    assert.equal(quantizeGroup(group([...values]), dtype, q).ok, false, `${values} ${dtype}`);
  }
  assert.equal(quantizeGroup(group([8e6]), "Q8", q).ok, true);
  assert.equal(quantizeGroup(group([5e5]), "Q4", q).ok, true);
});

test("quantizedDType: q8 quantizes the MLP and the LM head only; q4 the MLP in Q4 (but the first 1/32 of the layers, at least one) and everything else in Q8", () => {
  const layer = { index: 5, count: 28 };
  assert.deepEqual((["mlp", "lm_head", "attention", "embedding"] as const).map((m) => quantizedDType("q8", m, layer)), ["Q8", "Q8", undefined, undefined]);
  assert.deepEqual((["mlp", "lm_head", "attention", "embedding"] as const).map((m) => quantizedDType("q4", m, layer)), ["Q4", "Q8", "Q8", "Q8"]);
  const q4Mlp = (count: number) => Array.from({ length: count }, (_, index) => quantizedDType("q4", "mlp", { index, count }));
  assert.deepEqual(q4Mlp(1), ["Q8"]);
  assert.deepEqual(q4Mlp(2), ["Q8", "Q4"]);
  assert.deepEqual(q4Mlp(28).filter((d) => d === "Q8").length, 1);
  assert.deepEqual(q4Mlp(33).slice(0, 3), ["Q8", "Q8", "Q4"]);
  assert.equal(quantizedDType("q4", "attention", { index: 0, count: 2 }), "Q8");
  assert.throws(() => quantizedDType("q4", "mlp"), /an MLP matrix needs its layer's position/);
});

// ---------------------------------------------------------------------------------------------
// The kernel against the host, bit for bit

/**
 * Row-major values [rows, cols] stored as `dtype`: normal values whose rows range over magnitudes 2^-30..2^10 (tiny
 * groups get the raised scale), a zero row, a row of exact ties (multiples of 1/2 under a largest 127 or 8), signed
 * zeros and, for 16-bit dtypes, subnormals.
 */
function testValues(rows: number, cols: number, dtype: WeightDType, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const x = normalF32(rand, rows * cols);
  for (let r = 0; r < rows; r++) {
    const scale = r === 2 ? 0 : 2 ** (-30 + (40 * r) / Math.max(1, rows - 1));
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      x[i] = r === 3 ? (c % 32 === 0 ? (c % 64 === 0 ? 127 : 8) : Math.round(2 * x[i] * 3) / 2) : r === 4 && c % 3 === 0 ? -0 : x[i] * scale;
    }
  }
  if (dtype !== "F32" && rows > 5) for (let c = 0; c < cols; c += 5) x[5 * cols + c] = dtype === "BF16" ? fromBf16Bits(1 + c) : fromF16Bits(1 + c);
  return quantize(x, dtype);
}

/** The quantize kernel's bytes and status for one part of `values` (row-major, stored as `from`). */
async function quantizeDirect(values: Float32Array, rows: number, cols: number, from: WeightDType, dtype: QuantDType, id = 7) {
  const part = { buffer: zeros(device, layoutBytes(Math.ceil(rows / 32), cols, dtype) / 4, "part"), row0: 0, rows };
  const m: GpuMatrix & { dtype: QuantDType } = { name: "W", dtype, rows, cols, parts: [part] };
  const src = upload(device, encodeWeights(values, from), "row-major");
  const status = zeros(device, 1, "status");
  const rec = new Recorder(device);
  const call = await quantizeOnGpu(k, rec, m, part, src, from, status, id);
  rec.submit();
  const bytes = new Uint8Array(await readBytes(device, part.buffer));
  const [raised] = await readU32(device, status, 1);
  call.destroy();
  for (const b of [part.buffer, src, status]) b.destroy();
  return { bytes, raised };
}

function assertBytesEqual(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: bytes`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) assert.fail(`${what}: byte ${i} is 0x${got[i].toString(16)}, want 0x${want[i].toString(16)}`);
  }
}

// 896: real K (nq 112, whole groups); 94: a partial quad; 176 (Qwen-tiny's down_proj K): nq = 22, so groups cross
// blocks; 2100 (small-public's intermediate size): nq = 263; one row; rows off the block of 32.
const SHAPES: [rows: number, cols: number][] = [[64, 896], [53, 94], [45, 176], [33, 2100], [1, 8], [200, 4864]];
for (const from of ["BF16", "F16", "F32"] as const) {
  for (const dtype of QUANT) {
    test(`quantize kernel ${from} -> ${dtype}: shapes ${SHAPES.map(([r, c]) => `${r}x${c}`).join(", ")}, bit for bit`, async () => {
      for (const [i, [rows, cols]] of SHAPES.entries()) {
        const values = testValues(rows, cols, from, 10 * i);
        const want = layoutQuantized(values, rows, cols, dtype);
        assert.ok(want.ok);
        const got = await quantizeDirect(values, rows, cols, from, dtype);
        assertBytesEqual(got.bytes, want.bytes, `${from} -> ${dtype} ${rows}x${cols}`);
        assert.equal(got.raised, 0, `${rows}x${cols}: status`);
      }
    });
  }
}

test("quantize kernel: NaN, infinity and scales past f16 raise the status to the matrix's id", async () => {
  const cases: [string, number, QuantDType][] = [["NaN", NaN, "Q8"], ["infinity", -Infinity, "Q4"], ["1e7", 1e7, "Q8"], ["6e5", 6e5, "Q4"]];
  for (const [what, v, dtype] of cases) {
    const values = testValues(40, 96, "F32", 3);
    values[39 * 96 + 95] = v;
    assert.equal((await quantizeDirect(values, 40, 96, "F32", dtype, 3)).raised, 3, what);
  }
});

// ---------------------------------------------------------------------------------------------
// Through the weight sources

test("SafetensorsWeights: q/k/v stacked, streamed into 3 parts and quantized to Q4 and Q8, bit for bit per part", async () => {
  const K = 176, sizes = [70, 30, 30];
  const tensors = sizes.map((n, i) => ({ name: `p${i}`, values: testValues(n, K, "BF16", 40 + i) }));
  const all = Float32Array.from(tensors.flatMap((t) => [...t.values]));
  for (const dtype of QUANT) {
    // Room for 2 blocks of rows of the BF16 staging copy per binding: parts of 64, 64 and 2 rows, cutting the
    // stacked tensors mid-way.
    const weights = memoryWeights(k, 2 * 32 * K * 2, ...tensors.map((t, i) => memoryTensor(t.name, "BF16", [sizes[i], K], encodeWeights(t.values, "BF16"))));
    const W = await weights.matrix("qkv", tensors.map((t, i) => ({ name: t.name, size: sizes[i] })), K, dtype);
    await weights.finish();
    assert.deepEqual(W.parts.map((p) => [p.row0, p.rows]), [[0, 64], [64, 64], [128, 2]]);
    for (const p of W.parts) {
      const want = layoutQuantized(all.subarray(p.row0 * K, (p.row0 + p.rows) * K), p.rows, K, dtype);
      assertBytesEqual(new Uint8Array(await readBytes(device, p.buffer)), want.bytes, `${dtype} part at row ${p.row0}`);
    }
  }
});

test("SafetensorsWeights: a tensor that cannot be quantized fails the load by name", async () => {
  const good = testValues(32, 64, "BF16", 50), bad = testValues(32, 64, "BF16", 51);
  bad[100] = Infinity;
  const weights = memoryWeights(k, 1 << 20, memoryTensor("good", "BF16", [32, 64], encodeWeights(good, "BF16")),
    memoryTensor("bad", "BF16", [32, 64], encodeWeights(bad, "BF16")));
  await weights.matrix("good", [{ name: "good", size: 32 }], 64, "Q8");
  await weights.matrix("bad", [{ name: "bad", size: 32 }], 64, "Q8");
  await assert.rejects(weights.finish(), /^Error: bad: holds NaN, infinity or weights too large for an f16 scale .* load it unquantized$/);
});

test("RandomWeights: a 0.5B-wide matrix generated and quantized on the GPU equals the host's values quantized", async () => {
  const rows = 100, cols = 896;
  const host = Float32Array.from(randomMatrixBf16("w", 5, cols, 0, rows), fromBf16Bits);
  for (const dtype of QUANT) {
    const buffers = new BufferSet(device);
    const weights = new RandomWeights(k, buffers, device.limits.maxStorageBufferBindingSize, 5);
    const W = await weights.matrix("w", [{ name: "w", size: rows }], cols, dtype);
    await weights.finish();
    assertBytesEqual(new Uint8Array(await readBytes(device, W.parts[0].buffer)), layoutQuantized(host, rows, cols, dtype).bytes, dtype);
    buffers.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// Sizes

/** The GPU bytes of a shape's weights as the loader lays them out (matrices by planParts, vectors as f32). */
async function weightBytes(cfg: Qwen2Config, quant?: Quantization): Promise<number> {
  let bytes = 0;
  const source: WeightSource = {
    fileBytes: 0,
    matrix: async (label, parts, cols, dtype) => {
      const rows = parts.reduce((n, p) => n + p.size, 0);
      for (const p of planParts(label, rows, cols, dtype ?? "BF16", 128 << 20)) bytes += p.bytes;
      return { name: label, dtype: dtype ?? "BF16", rows, cols, parts: [] };
    },
    vector: async (_label, parts) => {
      bytes += 4 * parts.reduce((n, p) => n + p.size, 0);
      return undefined as unknown as GPUBuffer;
    },
    finish: async () => {},
    abandon: () => {},
  };
  await loadQwen2Weights(source, cfg, quant);
  return bytes;
}

test("parts of a quantized matrix fit a binding both laid out and as their row-major staging copy (0.5B's table, 128 MiB)", () => {
  const max = 128 << 20, V = 151936, H = 896;
  for (const dtype of QUANT) {
    const parts = planParts("embed", V, H, dtype, max, "BF16");
    assert.equal(parts.reduce((n, p) => n + p.rows, 0), V);
    for (const p of parts) assert.ok(p.bytes <= max && p.rows * H * 2 <= max, `${dtype} part of ${p.rows} rows`);
    // The staging copy (2 bytes a weight) bounds the parts, not the 1.06 or 0.56 bytes a weight laid out.
    assert.equal(parts[0].rows, Math.floor(max / (32 * H * 2)) * 32);
  }
});

test("weight bytes: Qwen2.5-1.5B in q4 under 1.1 GB (the int4 MLP but the first layer's, the rest Q8); q8 (the MLP and an LM head int8, the table kept BF16 for the lookup) 2.2-2.3 GB, against 3.1 GB in BF16", async (t) => {
  const cfg = QWEN25_SHAPES["qwen2.5-1.5b"];
  const [bf16, q8, q4] = [await weightBytes(cfg), await weightBytes(cfg, "q8"), await weightBytes(cfg, "q4")];
  t.diagnostic(`bytes: bf16 ${bf16}, q8 ${q8}, q4 ${q4}; 0.5B q4 ${await weightBytes(QWEN25_SHAPES["qwen2.5-0.5b"], "q4")}`);
  assert.ok(bf16 > 3.0e9 && bf16 < 3.2e9, `bf16 ${bf16}`);
  // MLP 1.16 G weights x 34/32 bytes + attention 0.15 G x 2 + table 0.23 G x 2 (lookup) + 0.23 G x 34/32 (LM head).
  assert.ok(q8 > 2.2e9 && q8 < 2.3e9, `q8 ${q8}`);
  assert.ok(q4 < 1.1e9, `q4 ${q4}`);
});
