// The linear.decode slot at the real shapes of Qwen2.5-0.5B and 1.5B (every projection's K and N, the LM head split
// across 128 MiB bindings) at M = 1, 3, 8 and 16 input rows, for every decode variant this adapter supports,
// against float64 references with the bound of test/kernels.test.ts ((K + 3) u * sum |terms|); split-K members
// of other shapes than the variants' defaults (a tuner's candidates) at odd sizes. The golden sets with each
// variant: test/variants-golden.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { GpuMatrix } from "../src/gpu/matrix.ts";
import { planParts } from "../src/gpu/matrix.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { isSupported, Linear, LINEAR_VARIANTS, sequenceStep, type LinearVariant } from "../src/ops/index.ts";
import { SPLITK_DECODE, splitkMember, type SplitKShape } from "../src/ops/linear-splitk.ts";
import {
  assertClose, gpuMatrix, linearRef, mulberry32, normalF32, quantize, readF32, testGpu, testKernels, uniformF32, uploadF32,
} from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
const DECODE = LINEAR_VARIANTS.filter((v) => v.slot === "linear.decode" && isSupported(v, device));
const SUBGROUPS = device.features.has("subgroups" as GPUFeatureName);

interface Case {
  W: GpuMatrix;
  /** W's values as stored (the reference reads the same numbers). */
  Wv: Float32Array;
  M: number;
  bias?: boolean;
  accumulate?: boolean;
  seed: number;
}

/**
 * Runs the linear layer with `variant` in both slots for M rows of x and checks y against the float64 reference,
 * and that the spare row after the M written ones keeps its values.
 */
async function checkDecode(c: Case, variant: LinearVariant, what: string): Promise<void> {
  const { W, M } = c;
  const { rows: N, cols: K } = W;
  const rand = mulberry32(c.seed);
  const xv = normalF32(rand, M * K);
  const biasV = c.bias ? normalF32(rand, N) : undefined;
  const y0 = normalF32(rand, (M + 1) * N, 2);
  const x = uploadF32(device, xv, "x"), y = uploadF32(device, y0, "y");
  const bias = biasV && uploadF32(device, biasV, "bias");
  const op = new Linear(k, x, W, y, { variants: { decode: variant, prefill: variant }, bias, accumulate: c.accumulate });
  try {
    await k.compiled();
    const rec = new Recorder(device);
    op.encode(rec, sequenceStep(M, 0));
    rec.submit();
    const got = await readF32(device, y, y0.length);
    const { y: ref, bound } = linearRef(xv, c.Wv, K, N, Array.from({ length: M }, (_, m) => m), biasV, c.accumulate ? y0 : undefined);
    const name = `${what} [${variant.slot}=${variant.name} member ${variant.member(M).name}] M=${M}`;
    assertClose(got.subarray(0, M * N), ref, (i) => bound[i], name);
    assertClose(got.subarray(M * N), y0.subarray(M * N), 0, `${name}: the row past the output untouched`);
  } finally {
    op.destroy();
    for (const b of [x, y, bias]) b?.destroy();
  }
}

/** A BF16 matrix of uniform values in [-1, 1), as stored, split into the given parts (default: one). */
function bf16Matrix(name: string, N: number, K: number, seed: number, partRows?: number[]): { W: GpuMatrix; Wv: Float32Array } {
  const Wv = quantize(uniformF32(mulberry32(seed), N * K), "BF16");
  return { W: gpuMatrix(device, name, Wv, N, K, "BF16", { partRows }), Wv };
}

const destroy = (W: GpuMatrix) => W.parts.forEach((p) => p.buffer.destroy());

// Each projection with its role's bias (q, k, v) or residual add (o, down), as the model runs it.
const SHAPES = [
  { model: "0.5B", role: "q_proj", K: 896, N: 896, bias: true },
  { model: "0.5B", role: "gate_proj", K: 896, N: 4864 },
  { model: "0.5B", role: "down_proj", K: 4864, N: 896, accumulate: true },
  { model: "1.5B", role: "k_proj", K: 1536, N: 256, bias: true },
  { model: "1.5B", role: "o_proj", K: 1536, N: 1536, accumulate: true },
  { model: "1.5B", role: "up_proj", K: 1536, N: 8960 },
  { model: "1.5B", role: "down_proj", K: 8960, N: 1536, accumulate: true },
];
const ROWS = [1, 3, 8, 16];
const names = DECODE.map((v) => v.name).join(", ");

SHAPES.forEach((s, i) => {
  const opts = s.bias ? "bias" : s.accumulate ? "accumulate" : "no bias";
  test(`linear.decode (${names}): Qwen2.5-${s.model} ${s.role} BF16 K=${s.K} N=${s.N}, ${opts}, M = ${ROWS.join(", ")}`, async () => {
    const { W, Wv } = bf16Matrix(s.role, s.N, s.K, 100 + i);
    try {
      for (const M of ROWS) {
        for (const v of DECODE) await checkDecode({ W, Wv, M, bias: s.bias, accumulate: s.accumulate, seed: 200 + 10 * i + M }, v, `${s.model} ${s.role}`);
      }
    } finally {
      destroy(W);
    }
  });
});

test(`linear.decode (${names}): Qwen2.5-0.5B LM head BF16 K=896 N=151936 split across 128 MiB bindings, M=1`, async () => {
  const N = 151936, K = 896;
  const parts = planParts("lm_head", N, K, "BF16", Math.min(128 << 20, device.limits.maxStorageBufferBindingSize));
  assert.ok(parts.length > 1, `the LM head fits one binding (${parts.length} part): the split is not tested`);
  const { W, Wv } = bf16Matrix("lm_head", N, K, 300, parts.map((p) => p.rows));
  try {
    for (const v of DECODE) await checkDecode({ W, Wv, M: 1, seed: 301 }, v, "0.5B lm_head");
  } finally {
    destroy(W);
  }
});

// Shapes a tuner may pick beyond the defaults: one and two groups per workgroup (a workgroup inside a block),
// one K-slice (no reduction), 4 and 8 slices (fewer than a 32-wide warp), two rounds of input rows through
// workgroup memory (TM = 16 at 256 invocations); N=53 in parts 20/20/13 (rows past a part's end inside its last
// block), at K=94 (a partial last quad) with M = 1, 5 and 37 (rows past TM, several tiles of TM rows), and at
// K=1538 (long slices, a partial last quad) with M = 5.
const EXTRA_SHAPES: SplitKShape[] = [
  { TM: 1, RG: 1, KT: 1 }, { TM: 2, RG: 2, KT: 4 }, { TM: 4, RG: 1, KT: 8 }, { TM: 16, RG: 2, KT: 32 },
];
for (const subgroups of SUBGROUPS ? [false, true] : [false]) {
  for (const shape of EXTRA_SHAPES) {
    const member = splitkMember(shape, subgroups);
    const variant: LinearVariant = {
      ...SPLITK_DECODE, name: member.name, requires: subgroups ? ["subgroups"] : [], members: [member], member: () => member,
    };
    test(`linear.decode member ${member.name}: N=53 split 20/20/13, bias and accumulate, K=94 at M = 1, 5, 37, K=1538 at M=5`, async () => {
      for (const [K, rows] of [[94, [1, 5, 37]], [1538, [5]]] as const) {
        const { W, Wv } = bf16Matrix("W", 53, K, 400 + K, [20, 20, 13]);
        try {
          for (const M of rows) await checkDecode({ W, Wv, M, bias: true, accumulate: true, seed: 500 + M }, variant, `K=${K} N=53`);
        } finally {
          destroy(W);
        }
      }
    });
  }
}
