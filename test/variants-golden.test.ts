// Every kernel variant this adapter supports, forced into its slot, on every golden set (the embedded model and each
// shared one): f32 variants within the golden tolerance of 1e-4 x max|ref|, f16 ones within f16's (GOLDEN_TOLERANCE),
// greedy continuations agreeing while the reference's margins exceed the logit error.
//
// The variants are grouped into few model loads: load i takes each slot's i-th f32 variant (today's kernel where a
// slot has fewer), so every f32 variant runs in some load and a variant's error cannot hide behind another slot's
// kernel, which is today's or another checked variant; each f16 variant gets a load of its own, with today's
// kernels elsewhere, so an f16 load says which variant it holds to the f16 tolerance.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { firstDivergence, runGoldenCheck } from "../src/check/golden.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { allVariants, choicePrecision, DEFAULT_KERNELS, type KernelChoice } from "../src/ops/kernel-variants.ts";
import { isSupported, OP_SLOTS } from "../src/ops/variant.ts";
import { testGpu } from "./gpu-helpers.ts";
import { embeddedModelDir, goldenDir } from "./shared-paths.ts";

const { device } = await testGpu();
const sets = [embeddedModelDir(), ...readdirSync(goldenDir(), { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(goldenDir(), e.name, "golden.json"))).map((e) => join(goldenDir(), e.name))];

const supported = allVariants().filter((v) => isSupported(v, device));
const f32 = OP_SLOTS.map((slot) => supported.filter((v) => v.slot === slot && v.precision === "f32" && v.name !== DEFAULT_KERNELS[slot]));
const loads: KernelChoice[] = [];
for (let i = 0; i < Math.max(...f32.map((l) => l.length)); i++) {
  loads.push(Object.fromEntries(OP_SLOTS.map((slot, s) => [slot, f32[s][i]?.name ?? DEFAULT_KERNELS[slot]])) as KernelChoice);
}
for (const v of supported.filter((v) => v.precision === "f16")) loads.push({ ...DEFAULT_KERNELS, [v.slot]: v.name });

test("every supported variant is in some load", () => {
  for (const v of supported) assert.ok(loads.some((l) => l[v.slot] === v.name), `${v.slot}=${v.name}`);
  assert.ok(loads.length >= 2, `${loads.length} loads`);
});

for (const choice of loads) {
  const forced = Object.fromEntries(OP_SLOTS.filter((s) => choice[s] !== DEFAULT_KERNELS[s]).map((s) => [s, choice[s]]));
  const { tolerance } = choicePrecision(choice);
  for (const path of sets) {
    test(`golden ${path} with ${Object.entries(forced).map(([s, v]) => `${s}=${v}`).join(", ")} (tolerance ${tolerance})`, async (t) => {
      const dir = nodeModelDir(path);
      const model = await Qwen2Model.load(device, dir, { maxSeqLen: 1100, kernels: choice });
      try {
        assert.deepEqual(model.kernelChoice, choice);
        const report = await runGoldenCheck(model, dir, { tolerance });
        const worst = report.rows.reduce((a, b) => (b.relError > a.relError ? b : a));
        t.diagnostic(`worst ${worst.tensor} (seq${worst.sequence}) rel ${worst.relError.toExponential(2)}`);
        assert.ok(report.ok, `${path}: ${firstDivergence(report)}`);
        if (tolerance === choicePrecision(DEFAULT_KERNELS).tolerance) {
          for (const s of report.sequences) assert.equal(s.greedy.compared, s.greedy.want.length, `seq${s.sequence}: ${s.greedy.note}`);
        }
      } finally {
        model.destroy();
      }
    });
  }
}
