// The linear slots' variants at one shape, head to head: each variant's member for M input rows, over `--layers`
// distinct random weight matrices chained in one submission (so that no cache holds them), timed in interleaved
// rounds (variant a, b, c, a, b, c, ...) so that a drift in the machine's speed reaches every variant alike; the
// median per variant, and each output's largest difference to the first variant's relative to its largest value.
// Lighter than `r3gpu tune` (no model): for comparing kernels at the shapes of one projection. Several dtypes
// (`--dtype BF16,Q4`) are timed in the same interleaved rounds, so that their ratios are measured alike too; each
// output's difference is to the first variant of its own dtype (across dtypes it would be the quantization error).
//
//   npm run bench:linear -- --k 896 --n 9728 --m 8 [--dtype BF16|F16|F32|Q8|Q4[,...]] [--layers 6] [--rounds 7] [--variants rows,blocks]
import { parseArgs } from "node:util";
import { gpuMatrix, quantizedMatrix, readF32, uploadF32 } from "../src/check/device-data.ts";
import { Kernels, type GpuDType } from "../src/gpu/kernel.ts";
import { isQuantized } from "../src/gpu/matrix.ts";
import { nodeGpu } from "../src/gpu/node.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { median } from "../src/gpu/timer.ts";
import { isSupported, Linear, LINEAR_VARIANTS, sequenceStep, type LinearVariant } from "../src/ops/index.ts";
import { linearSlot } from "../src/ops/linear.ts";
import { mulberry32 } from "../src/util/prng.ts";

const { values } = parseArgs({
  options: {
    k: { type: "string", default: "896" }, n: { type: "string", default: "9728" }, m: { type: "string", default: "1" },
    dtype: { type: "string", default: "BF16" }, layers: { type: "string", default: "6" }, rounds: { type: "string", default: "7" },
    variants: { type: "string" },
  },
});
const [K, N, M, layers, rounds] = ["k", "n", "m", "layers", "rounds"].map((f) => {
  const v = Number(values[f as "k"]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${f} takes a positive integer, not ${values[f as "k"]}`);
  return v;
});
if (K % 2) throw new Error(`--k ${K}: the linear kernels take an even K`);
const dtypes = values.dtype.split(",") as GpuDType[];
for (const d of dtypes) if (!["BF16", "F16", "F32", "Q8", "Q4"].includes(d)) throw new Error(`--dtype ${d}: one of BF16, F16, F32, Q8, Q4`);

const { device, info } = await nodeGpu();
// The slot that serves a step of M rows, and its variants this adapter runs in f32.
const slot = linearSlot(M);
const mine = LINEAR_VARIANTS.filter((v) => v.slot === slot && v.precision === "f32" && isSupported(v, device));
const names = values.variants?.split(",") ?? mine.map((v) => v.name);
const variants = names.map((name) => mine.find((v) => v.name === name) ??
  (() => { throw new Error(`--variants: ${slot} has no f32 variant "${name}" here (it has ${mine.map((v) => v.name).join(", ")})`); })());

const kernels = new Kernels(device);
const rand = mulberry32(1);
// The same values in every dtype.
const values32 = Array.from({ length: layers }, () => new Float32Array(N * K).map(() => 2 * rand() - 1));
const x = uploadF32(device, new Float32Array(M * K).map(() => 2 * rand() - 1), "x");
const y = uploadF32(device, new Float32Array(M * N), "y");
const step = sequenceStep(M, 0);
const runs = dtypes.flatMap((dtype) => {
  const mats = values32.map((v, i) =>
    isQuantized(dtype) ? quantizedMatrix(device, `w${i}`, v, N, K, dtype).W : gpuMatrix(device, `w${i}`, v, N, K, dtype));
  return variants.map((v: LinearVariant) => ({
    v, dtype, ops: mats.map((W) => new Linear(kernels, x, W, y, { variants: { vector: v, decode: v, prefill: v } })), seconds: [] as number[], error: 0,
  }));
});
await kernels.compiled();
const run = async (ops: Linear[]) => {
  const rec = new Recorder(device);
  for (const op of ops) op.encode(rec, step);
  rec.submit();
  await device.queue.onSubmittedWorkDone();
};
const first = new Map<GpuDType, Float32Array>();
for (const r of runs) {
  await run(r.ops);
  const got = await readF32(device, y, M * N);
  const ref = first.get(r.dtype);
  if (ref) {
    let scale = 0;
    for (let i = 0; i < got.length; i++) { r.error = Math.max(r.error, Math.abs(got[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
    r.error /= scale;
  } else first.set(r.dtype, got.slice());
}
for (let i = 0; i < rounds; i++) {
  for (const r of runs) {
    const t0 = performance.now();
    await run(r.ops);
    r.seconds.push((performance.now() - t0) / 1000 / layers);
  }
}
console.log(`${slot} at M=${M} K=${K} N=${N} ${dtypes.join(", ")} on ${info.description || info.vendor}: median of ${rounds} interleaved rounds over ${layers} matrices`);
for (const r of runs) {
  const s = median(r.seconds);
  const member = r.v.member(M).name;
  console.log(`${r.dtype.padEnd(5)} ${r.v.name.padEnd(16)} ${member.padEnd(22)} ${(s * 1e3).toFixed(2).padStart(8)} ms  ${(2 * M * N * K / s / 1e9).toFixed(2).padStart(6)} GFLOP/s` +
    `  x${(s / median(runs[0].seconds)).toFixed(2)} of ${runs[0].dtype} ${runs[0].v.name}  diff ${r.error.toExponential(1)}`);
}
process.exit(0);
