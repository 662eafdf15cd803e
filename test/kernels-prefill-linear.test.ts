// The prefill linear variants at the real shapes of Qwen2.5-0.5B and 1.5B (M = 128 input rows, BF16 weights) and
// at an odd shape, against float64 references with the bounds of test/gpu-helpers.ts (linearRef: the f32 bound
// for f32 variants, the f16 bound for f16 ones). The golden sets with each variant: test/variants-golden.test.ts.
//
// A full float64 reference of a 128 x 8960 x 1536 product takes too long on the host, so every output of a few
// input rows (the first and last of each tile of 32 and 64 rows, and one more) and every row of a few output
// columns (the first and last of each 64-column tile, the last one, and one more) are checked: each tile edge of
// the kernels, over all of K.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import type { WeightDType } from "../src/gpu/kernel.ts";
import { isSupported, LINEAR_VARIANTS, type Precision } from "../src/ops/index.ts";
import { forDevice } from "../src/ops/linear-subgroup-matrix.ts";
import { TILED_PREFILL } from "../src/ops/linear-tiled.ts";
import {
  assertClose, gpuMatrix, linearRef, mulberry32, normalF32, quantize, runLinear, testGpu, testKernels, uniformF32, upload, uploadF32,
} from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
// Every prefill variant this adapter runs, the subgroup-matrix one on the adapter's own config (as at load).
const PREFILL = LINEAR_VARIANTS.filter((v) => v.slot === "linear.prefill" && isSupported(v, device)).map((v) => forDevice(v, device));
console.log(`prefill variants on this adapter: ${PREFILL.map((v) => v.name).join(", ")}`);

interface Shape {
  what: string;
  M: number;
  K: number;
  N: number;
  bias?: boolean;
  accumulate?: boolean;
  maxPartRows?: number;
}

// q/k/v have a bias; o and down add into the residual stream (accumulate).
const REAL: Shape[] = [
  { what: "0.5B q_proj", M: 128, K: 896, N: 896, bias: true },
  { what: "0.5B gate/up_proj", M: 128, K: 896, N: 4864 },
  { what: "0.5B down_proj", M: 128, K: 4864, N: 896, accumulate: true },
  { what: "1.5B k/v_proj", M: 128, K: 1536, N: 256, bias: true },
  { what: "1.5B o_proj", M: 128, K: 1536, N: 1536, accumulate: true },
  { what: "1.5B gate/up_proj", M: 128, K: 1536, N: 8960 },
  { what: "1.5B down_proj", M: 128, K: 8960, N: 1536, accumulate: true },
];
// Off every tile: a partial row tile (77 = 64 + 13), a partial K tile and quad (1538 = 96 * 16 + 2), a partial
// column tile and block in each of three parts (1001 = 500 + 500 + 1 rows).
const ODD: Shape = { what: "odd", M: 77, K: 1538, N: 1001, bias: true, accumulate: true, maxPartRows: 500 };

/** Sorted distinct indices below n: the edges of tiles of 32 and 64, the last index, and one from `rand`. */
function edges(n: number, rand: () => number): number[] {
  const picks = [0, 31, 32, 63, 64, 127, n - 1, Math.floor(rand() * n)];
  return [...new Set(picks.filter((i) => i < n))].sort((a, b) => a - b);
}

/** One shape's inputs on the GPU, run by each variant in turn; every output checked at the picked rows and columns. */
async function checkShape(t: TestContext, s: Shape, dtype: WeightDType, seed: number): Promise<void> {
  const { M, K, N } = s;
  const rand = mulberry32(seed);
  const Wv = quantize(uniformF32(rand, N * K, -1, 1), dtype);
  const xv = normalF32(rand, M * K);
  const biasV = s.bias ? normalF32(rand, N) : undefined;
  // y has a spare row past the written ones; its initial values must survive.
  const y0 = normalF32(rand, (M + 1) * N, 2);
  const W = gpuMatrix(device, "W", Wv, N, K, dtype, { maxPartRows: s.maxPartRows });
  // NaN right after x: a kernel that used any x past K (or past M) would return NaN.
  const xBuf = upload(device, Float32Array.from([...xv, ...new Array(8).fill(NaN)]), "x");
  const bias = biasV && uploadF32(device, biasV, "bias");
  const rows = edges(M, rand), cols = edges(N, rand);
  const allRows = Array.from({ length: M }, (_, m) => m);
  const y0Of = (ms: number[]) => s.accumulate ? Float32Array.from(ms.flatMap((m) => [...y0.subarray(m * N, (m + 1) * N)])) : undefined;
  // Every output of the picked rows, then every row of the picked columns; the bounds depend on the precision.
  const refs = new Map<Precision, ReturnType<typeof linearRef>[]>();
  const reference = (precision: Precision) => {
    if (!refs.has(precision)) {
      refs.set(precision, [linearRef(xv, Wv, K, N, rows, biasV, y0Of(rows), { precision, dtype }),
        linearRef(xv, Wv, K, N, allRows, biasV, y0Of(allRows), { precision, dtype, cols })]);
    }
    return refs.get(precision)!;
  };
  try {
    for (const variant of PREFILL) {
      await t.test(variant.name, async (st) => {
        const got = await runLinear(k, xBuf, W, y0, variant, M, { bias, accumulate: s.accumulate });
        const what = `linear ${variant.slot}=${variant.name} ${s.what} ${dtype} M=${M} K=${K} N=${N}`;
        const [byRow, byCol] = reference(variant.precision);
        const gotRows = Float64Array.from(rows.flatMap((m) => [...got.subarray(m * N, (m + 1) * N)]));
        const r1 = assertClose(gotRows, byRow.y, (i) => byRow.bound[i], `${what}: rows ${rows}`);
        const gotCols = Float64Array.from(allRows.flatMap((m) => cols.map((n) => got[m * N + n])));
        const r2 = assertClose(gotCols, byCol.y, (i) => byCol.bound[i], `${what}: columns ${cols}`);
        assert.deepEqual([...got.subarray(M * N)], [...y0.subarray(M * N)], `${what}: the row past M untouched`);
        st.diagnostic(`largest error / bound: ${Math.max(r1.maxRatio, r2.maxRatio).toFixed(3)}`);
      });
    }
  } finally {
    for (const part of W.parts) part.buffer.destroy();
    xBuf.destroy();
    bias?.destroy();
  }
}

REAL.forEach((s, i) => {
  test(`prefill linear variants, ${s.what}: M=${s.M} K=${s.K} N=${s.N} BF16${s.bias ? ", bias" : ""}${s.accumulate ? ", accumulate" : ""}`, async (t) => {
    await checkShape(t, s, "BF16", 100 + i);
  });
});
for (const dtype of ["BF16", "F16", "F32"] as const) {
  test(`prefill linear variants, odd shape M=77 K=1538 N=1001 ${dtype}, 3 parts 500/500/1, bias, accumulate, NaN after x`, async (t) => {
    await checkShape(t, ODD, dtype, 120);
  });
}

test("tiled grid: past 65535 column tiles per dimension is an error, not a wrong result", () => {
  const member = TILED_PREFILL.member(128);
  const BN = member.constants!.BN;
  assert.deepEqual(TILED_PREFILL.grid(member, 65535 * BN, 128), [65535, 2]);
  assert.throws(() => TILED_PREFILL.grid(member, 65535 * BN + 1, 128), /65536 x 2 workgroups, over 65535/);
});

// =============================================================================================
