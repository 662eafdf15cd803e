// Every linear variant this adapter runs (both slots) and the embedding lookup on Q8 and Q4 weights: the matrices
// quantized on the host (layoutQuantized, which test/quant.test.ts holds the load-time kernel to bit for bit), the
// outputs against float64 references on the dequantized values with the bounds of linearRef (integer x scale is
// exact in f32, so the f32 bound holds as for stored weights; the f16 bound counts the weights' rounding to f16).
// Shapes: a real 0.5B projection at decode, K = 94 (a partial quad, groups crossing blocks) and K = 176 (nq = 22:
// groups that end in one block and start in the next) in parts that end inside a block, and prefill at odd shapes.
import { test } from "node:test";
import type { QuantDType } from "../src/gpu/kernel.ts";
import type { GpuMatrix } from "../src/gpu/matrix.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { Embedding, isSupported, LINEAR_VARIANTS, sequenceStep, type LinearVariant } from "../src/ops/index.ts";
import { forDevice } from "../src/ops/linear-subgroup-matrix.ts";
import {
  assertClose, linearRef, mulberry32, normalF32, quantizedMatrix, readF32, runLinear, testGpu, testKernels, uniformF32, upload, uploadF32, uploadU32,
} from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
const VARIANTS = LINEAR_VARIANTS.filter((v) => isSupported(v, device)).map((v) => forDevice(v, device));
const QUANT: QuantDType[] = ["Q8", "Q4"];

interface Shape {
  what: string;
  K: number;
  N: number;
  rows: number[];
  partRows?: number[];
  bias?: boolean;
  accumulate?: boolean;
}

const DECODE_SHAPES: Shape[] = [
  { what: "0.5B q_proj", K: 896, N: 896, rows: [1, 16], bias: true },
  { what: "0.5B down_proj", K: 4864, N: 896, rows: [1], accumulate: true },
  { what: "odd", K: 94, N: 53, rows: [1, 5], partRows: [20, 20, 13], bias: true, accumulate: true },
  { what: "groups across blocks", K: 176, N: 100, rows: [2], partRows: [64, 36], accumulate: true },
];
const PREFILL_SHAPES: Shape[] = [
  { what: "odd", K: 394, N: 201, rows: [77], partRows: [96, 96, 9], bias: true, accumulate: true },
  { what: "groups across blocks", K: 176, N: 100, rows: [40], partRows: [64, 36] },
];

const destroy = (W: GpuMatrix) => W.parts.forEach((p) => p.buffer.destroy());

/**
 * Runs each variant on the same M rows of x and checks every output, and that the spare row after them keeps its
 * values (one reference per precision).
 */
async function checkLinear(W: GpuMatrix, Wv: Float32Array, M: number, s: Shape, variants: LinearVariant[], seed: number): Promise<void> {
  const { K, N } = s;
  const rand = mulberry32(seed);
  const xv = normalF32(rand, M * K);
  const biasV = s.bias ? normalF32(rand, N) : undefined;
  const y0 = normalF32(rand, (M + 1) * N, 2);
  // NaN right after x: a kernel that used any x past K (or past M) would return NaN.
  const x = upload(device, Float32Array.from([...xv, ...new Array(8).fill(NaN)]), "x");
  const bias = biasV && uploadF32(device, biasV, "bias");
  const refs = new Map<string, ReturnType<typeof linearRef>>();
  try {
    for (const variant of variants) {
      const got = await runLinear(k, x, W, y0, variant, M, { bias, accumulate: s.accumulate });
      if (!refs.has(variant.precision)) {
        refs.set(variant.precision, linearRef(xv, Wv, K, N, Array.from({ length: M }, (_, m) => m), biasV, s.accumulate ? y0 : undefined,
          { precision: variant.precision, dtype: W.dtype }));
      }
      const ref = refs.get(variant.precision)!;
      const what = `${variant.slot}=${variant.name} ${s.what} ${W.dtype} K=${K} N=${N} M=${M}`;
      assertClose(got.subarray(0, M * N), ref.y, (i) => ref.bound[i], what);
      assertClose(got.subarray(M * N), y0.subarray(M * N), 0, `${what}: the row past the output untouched`);
    }
  } finally {
    for (const b of [x, bias]) b?.destroy();
  }
}

for (const [slot, shapes] of [["linear.decode", DECODE_SHAPES], ["linear.prefill", PREFILL_SHAPES]] as const) {
  const variants = VARIANTS.filter((v) => v.slot === slot);
  for (const dtype of QUANT) {
    test(`${slot} (${variants.map((v) => v.name).join(", ")}) on ${dtype} weights: ${shapes.map((s) => `${s.what} K=${s.K} N=${s.N}`).join("; ")}`, async () => {
      for (const [i, s] of shapes.entries()) {
        const { W, values } = quantizedMatrix(device, s.what, uniformF32(mulberry32(10 + i), s.N * s.K), s.N, s.K, dtype, { partRows: s.partRows });
        try {
          for (const M of s.rows) await checkLinear(W, values, M, s, variants, 100 * i + M);
        } finally {
          destroy(W);
        }
      }
    });
  }
}

for (const dtype of QUANT) {
  test(`Embedding on a ${dtype} table: V=50 split 17/8/25 rows, H=94, ids at part edges, the dequantized rows exactly`, async () => {
    const V = 50, H = 94, ids = [0, 16, 17, 24, 25, 49, 3, 3];
    const { W, values } = quantizedMatrix(device, "embed", normalF32(mulberry32(7), V * H), V, H, dtype, { partRows: [17, 8, 25] });
    const sentinel = new Float32Array((ids.length + 1) * H).fill(-12345);
    const x = uploadF32(device, sentinel, "x"), idBuf = uploadU32(device, ids, "ids");
    const op = new Embedding(k, idBuf, W, x);
    try {
      await k.compiled();
      const rec = new Recorder(device);
      op.encode(rec, sequenceStep(ids.length, 0));
      rec.submit();
      const got = await readF32(device, x, sentinel.length);
      const want = new Float32Array(sentinel);
      ids.forEach((id, t) => want.set(values.subarray(id * H, (id + 1) * H), t * H));
      assertClose(got, want, 0, `embedding ${dtype}`);
    } finally {
      op.destroy();
      destroy(W);
      for (const b of [x, idBuf]) b.destroy();
    }
  });
}
