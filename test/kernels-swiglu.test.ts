// The swiglu.decode slot: act = silu(gate(h)) * up(h) over a stacked gate/up matrix, for every variant this adapter
// supports (the separate linear and SwiGLU kernels, and the split-K kernel with SwiGLU as its epilogue), against a
// float64 reference whose bound follows the linear layer's (test/kernels-decode-linear.test.ts) through SwiGLU
// (swigluRef, src/check/reference.ts): at Qwen2.5-0.5B's and 1.5B's MLP widths and at odd ones, in BF16, Q8 and
// Q4, with the row past the output untouched and NaN past x, so that a kernel reading past K or writing past M
// fails. The golden sets with each variant: test/variants-golden.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { WeightDType, QuantDType } from "../src/gpu/kernel.ts";
import type { GpuMatrix } from "../src/gpu/matrix.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { GateUpSwiGlu, isSupported, ROWS_DECODE, ROWS_PREFILL, sequenceStep, SWIGLU_VARIANTS } from "../src/ops/index.ts";
import {
  assertClose, gpuMatrix, linearRef, mulberry32, normalF32, quantize, quantizedMatrix, readF32, swigluRef, testGpu, testKernels,
  uniformF32, upload, uploadF32,
} from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
const VARIANTS = SWIGLU_VARIANTS.filter((v) => isSupported(v, device));
const names = VARIANTS.map((v) => v.name).join(", ");
const LINEAR = { decode: ROWS_DECODE, prefill: ROWS_PREFILL };

function stacked(dtype: WeightDType | QuantDType, I: number, K: number, seed: number, partRows?: number[]): { W: GpuMatrix; Wv: Float32Array } {
  const values = uniformF32(mulberry32(seed), 2 * I * K);
  if (dtype === "Q8" || dtype === "Q4") {
    const { W, values: Wv } = quantizedMatrix(device, "gate_up", values, 2 * I, K, dtype, { partRows });
    return { W, Wv };
  }
  const Wv = quantize(values, dtype);
  return { W: gpuMatrix(device, "gate_up", Wv, 2 * I, K, dtype, { partRows }), Wv };
}

async function check(W: GpuMatrix, Wv: Float32Array, I: number, M: number, seed: number, what: string): Promise<void> {
  const K = W.cols;
  const rand = mulberry32(seed);
  const xv = normalF32(rand, M * K);
  const act0 = normalF32(rand, (M + 1) * I, 2);
  // NaN right after x: a kernel that used any x past K (or past M) would return NaN.
  const h = upload(device, Float32Array.from([...xv, ...new Array(8).fill(NaN)]), "h");
  const gateUp = device.createBuffer({ size: Math.max(M, 17) * 2 * I * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const ref = swigluRef(linearRef(xv, Wv, K, 2 * I, [...Array(M).keys()], undefined, undefined, { dtype: W.dtype }), M, I);
  try {
    for (const v of VARIANTS) {
      const act = uploadF32(device, act0, "act");
      const op = new GateUpSwiGlu(k, h, W, gateUp, act, I, { linear: LINEAR, decode: v });
      try {
        await k.compiled();
        const rec = new Recorder(device);
        op.encode(rec, sequenceStep(M, 0));
        rec.submit();
        const got = await readF32(device, act, act0.length);
        const name = `${what} ${W.dtype} K=${K} I=${I} M=${M} [swiglu.decode=${v.name}]`;
        assertClose(got.subarray(0, M * I), ref.y, (i) => ref.bound[i], name);
        assertClose(got.subarray(M * I), act0.subarray(M * I), 0, `${name}: the row past the output untouched`);
      } finally {
        op.destroy();
        act.destroy();
      }
    }
  } finally {
    h.destroy();
    gateUp.destroy();
  }
}

const destroy = (W: GpuMatrix) => W.parts.forEach((p) => p.buffer.destroy());

const SHAPES = [
  { what: "Qwen2.5-0.5B", K: 896, I: 4864, rows: [1, 16], dtypes: ["BF16"] },
  { what: "Qwen2.5-1.5B", K: 1536, I: 8960, rows: [1], dtypes: ["Q4"] },
  // I not a multiple of the 8-row groups nor of the 32-row blocks, so up rows start mid-block; K with a partial quad.
  { what: "odd", K: 94, I: 45, rows: [1, 5, 16, 17], dtypes: ["BF16", "F32", "F16"] },
  { what: "tiny-public", K: 64, I: 176, rows: [2], dtypes: ["BF16", "Q8", "Q4"] },
  { what: "small-public", K: 768, I: 2100, rows: [1, 7], dtypes: ["Q8"] },
] as const;

SHAPES.forEach((s, i) => {
  test(`swiglu.decode (${names}): ${s.what} K=${s.K} I=${s.I} in ${s.dtypes.join(", ")}, M = ${s.rows.join(", ")}`, async () => {
    for (const [j, dtype] of s.dtypes.entries()) {
      const { W, Wv } = stacked(dtype, s.I, s.K, 500 + 10 * i + j);
      try {
        for (const M of s.rows) await check(W, Wv, s.I, M, 600 + 10 * i + M, s.what);
      } finally {
        destroy(W);
      }
    }
  });
});

test("swiglu.decode: a fused variant over a gate/up matrix split across buffers is refused, naming the matrix and the way out", () => {
  const { W } = stacked("BF16", 45, 94, 700, [40, 50]);
  const buf = (n: number) => device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE });
  const [h, gateUp, act] = [buf(94), buf(90), buf(45)];
  try {
    for (const v of VARIANTS.filter((x) => x.members.length > 0)) {
      assert.throws(() => new GateUpSwiGlu(k, h, W, gateUp, act, 45, { linear: LINEAR, decode: v }),
        new RegExp(`gate_up: swiglu\\.decode=${v.name} needs the gate/up matrix in one buffer, but it is split in 2 .*swiglu\\.decode=separate`));
    }
    assert.throws(() => new GateUpSwiGlu(k, h, W, gateUp, act, 44, { linear: LINEAR, decode: VARIANTS[0] }), /gate_up: 90 rows, not the 2 x 44/);
  } finally {
    destroy(W);
    for (const b of [h, gateUp, act]) b.destroy();
  }
});
