// The lm_head.decode slot: the LM head and the greedy choice of each output row, for every variant this adapter
// supports (the separate linear and argmax kernels, and the split-K LM head with the argmax's first half as its
// epilogue), against a float64 reference: each id must be the reference's argmax, or within the two logits' error
// bounds of it (test/kernels-decode-linear.test.ts's bound). At Qwen2.5-0.5B's LM head split across 128 MiB
// bindings, at odd sizes (rows not a whole workgroup's, K with a partial quad, more outputs than a decode step), in
// BF16 and Q8; exact ties go to the lowest id (as torch.argmax), NaN logits never win, a row without a finite
// logit gives NO_FINITE_LOGIT, and a step whose logits are read back still gets every logit.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { QuantDType, WeightDType } from "../src/gpu/kernel.ts";
import type { GpuMatrix } from "../src/gpu/matrix.ts";
import { planParts } from "../src/gpu/matrix.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { isSupported, LM_HEAD_VARIANTS, LmHead, NO_FINITE_LOGIT, ROWS_DECODE, ROWS_PREFILL, type Step } from "../src/ops/index.ts";
import {
  assertClose, gpuMatrix, linearRef, mulberry32, normalF32, quantize, quantizedMatrix, readF32, readU32, testGpu, testKernels,
  uniformF32, uploadF32, uploadU32,
} from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
const VARIANTS = LM_HEAD_VARIANTS.filter((v) => isSupported(v, device));
const names = VARIANTS.map((v) => v.name).join(", ");
const LINEAR = { decode: ROWS_DECODE, prefill: ROWS_PREFILL };
const headStep = (M: number, logits = false): Step => ({ T: M, outputs: M, keys: M, maxKeys: 1, logits });

function matrix(dtype: WeightDType | QuantDType, values: Float32Array, N: number, K: number, partRows?: number[]): { W: GpuMatrix; Wv: Float32Array } {
  if (dtype === "Q8" || dtype === "Q4") {
    const { W, values: Wv } = quantizedMatrix(device, "lm_head", values, N, K, dtype, { partRows });
    return { W, Wv };
  }
  const Wv = quantize(values, dtype);
  return { W: gpuMatrix(device, "lm_head", Wv, N, K, dtype, { partRows }), Wv };
}

/** Runs every variant on M rows of x; returns each variant's ids (and the logits when `logits`). */
async function runHead(W: GpuMatrix, xv: Float32Array, M: number, logits = false) {
  const { rows: N } = W;
  const x = uploadF32(device, xv, "x");
  const out = new Map<string, { ids: Uint32Array; logits?: Float32Array }>();
  try {
    for (const v of VARIANTS) {
      const logitsBuf = uploadF32(device, new Float32Array(M * N), "logits");
      const next = uploadU32(device, new Uint32Array(M + 1).fill(12345), "next");
      const op = new LmHead(k, x, W, logitsBuf, next, { linear: LINEAR, decode: v });
      try {
        await k.compiled();
        const rec = new Recorder(device);
        op.encode(rec, headStep(M, logits));
        rec.submit();
        const ids = await readU32(device, next, M + 1);
        assert.equal(ids[M], 12345, `${v.name}: the id past the outputs untouched`);
        out.set(v.name, { ids: ids.subarray(0, M), logits: logits ? await readF32(device, logitsBuf, M * N) : undefined });
      } finally {
        op.destroy();
        logitsBuf.destroy();
        next.destroy();
      }
    }
  } finally {
    x.destroy();
  }
  return out;
}

async function checkHead(W: GpuMatrix, Wv: Float32Array, M: number, seed: number, what: string): Promise<void> {
  const { rows: N, cols: K } = W;
  const xv = normalF32(mulberry32(seed), M * K);
  const ref = linearRef(xv, Wv, K, N, [...Array(M).keys()], undefined, undefined, { dtype: W.dtype });
  for (const [name, { ids }] of await runHead(W, xv, M)) {
    for (let m = 0; m < M; m++) {
      let best = 0;
      for (let n = 1; n < N; n++) if (ref.y[m * N + n] > ref.y[m * N + best]) best = n;
      const id = ids[m];
      assert.ok(id < N, `${what} [lm_head.decode=${name}] row ${m}: id ${id}`);
      const gap = ref.y[m * N + best] - ref.y[m * N + id];
      assert.ok(gap <= ref.bound[m * N + id] + ref.bound[m * N + best],
        `${what} ${W.dtype} K=${K} N=${N} M=${M} [lm_head.decode=${name}] row ${m}: id ${id} for the argmax ${best} (gap ${gap})`);
    }
  }
}

const destroy = (W: GpuMatrix) => W.parts.forEach((p) => p.buffer.destroy());

test(`lm_head.decode (${names}): Qwen2.5-0.5B's head BF16 K=896 N=151936 split across 128 MiB bindings, M = 1 and 4`, async () => {
  const N = 151936, K = 896;
  const parts = planParts("lm_head", N, K, "BF16", Math.min(128 << 20, device.limits.maxStorageBufferBindingSize));
  assert.ok(parts.length > 1);
  const { W, Wv } = matrix("BF16", uniformF32(mulberry32(800), N * K), N, K, parts.map((p) => p.rows));
  try {
    for (const M of [1, 4]) await checkHead(W, Wv, M, 810 + M, "0.5B");
  } finally {
    destroy(W);
  }
});

test(`lm_head.decode (${names}): odd sizes in BF16 and Q8 (N=1001 in parts of 512 and 489, K=94 and 96), M = 1, 5, 16, 17`, async () => {
  for (const [i, [dtype, K]] of ([["BF16", 94], ["Q8", 96]] as const).entries()) {
    const { W, Wv } = matrix(dtype, uniformF32(mulberry32(820 + i), 1001 * K), 1001, K, [512, 489]);
    try {
      for (const M of [1, 5, 16, 17]) await checkHead(W, Wv, M, 830 + 10 * i + M, "odd");
    } finally {
      destroy(W);
    }
  }
});

test(`lm_head.decode (${names}): exact ties go to the lowest id, NaN never wins, no finite logit gives NO_FINITE_LOGIT`, async () => {
  const N = 300, K = 16;
  // Rows 37, 100 and 290 equal (the largest for x = 1); row 5 NaN; x row 1 is NaN, so every logit of that row is.
  const values = new Float32Array(N * K).fill(0.25);
  for (const r of [37, 100, 290]) values.fill(1, r * K, (r + 1) * K);
  values.fill(NaN, 5 * K, 6 * K);
  const { W } = matrix("F32", values, N, K, [256, 44]);
  try {
    const xv = Float32Array.from([...new Array(K).fill(1), ...new Array(K).fill(NaN)]);
    for (const [name, { ids }] of await runHead(W, xv, 2)) {
      assert.deepEqual([...ids], [37, NO_FINITE_LOGIT], `lm_head.decode=${name}`);
    }
  } finally {
    destroy(W);
  }
});

test(`lm_head.decode (${names}): a step whose logits are read back gets every logit and the same ids`, async () => {
  const N = 1001, K = 94, M = 3;
  const { W, Wv } = matrix("BF16", uniformF32(mulberry32(850), N * K), N, K);
  try {
    const xv = normalF32(mulberry32(851), M * K);
    const ref = linearRef(xv, Wv, K, N, [...Array(M).keys()], undefined, undefined, { dtype: "BF16" });
    const runs = await runHead(W, xv, M, true);
    const separate = runs.get("separate")!;
    for (const [name, { ids, logits }] of runs) {
      assertClose(logits!, ref.y, (i) => ref.bound[i], `lm_head.decode=${name}: logits`);
      assert.deepEqual([...ids], [...separate.ids], `lm_head.decode=${name}: ids`);
    }
  } finally {
    destroy(W);
  }
});
