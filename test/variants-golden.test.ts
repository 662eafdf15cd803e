// Every kernel variant this adapter supports, forced into its slot, on every golden set (the embedded model and each
// shared one): f32 variants within the golden tolerance of 1e-4 x max|ref|, f16 ones within f16's (GOLDEN_TOLERANCE),
// greedy continuations agreeing while the reference's margins exceed the logit error; f32 choices also with every
// sequence of a set in one batch.
//
// The variants are grouped into few model loads (coveringChoices, src/check/kernel-check.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { firstDivergence, runGoldenCheck } from "../src/check/golden.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { coveringChoices } from "../src/check/kernel-check.ts";
import { allVariants, choicePrecision, DEFAULT_KERNELS } from "../src/ops/kernel-variants.ts";
import { GOLDEN_TOLERANCE, isSupported, OP_SLOTS } from "../src/ops/variant.ts";
import { testGpu } from "./gpu-helpers.ts";
import { embeddedModelDir, goldenDir } from "./shared-paths.ts";

const { device } = await testGpu();
const sets = [embeddedModelDir(), ...readdirSync(goldenDir(), { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(goldenDir(), e.name, "golden.json"))).map((e) => join(goldenDir(), e.name))];

/** Sets whose longest golden sequence is at most this many tokens also run batched through every f32 choice. */
const BATCHED_MAX_TOKENS = 512;

function longestSequence(path: string): number {
  const golden = JSON.parse(readFileSync(join(path, "golden.json"), "utf8")) as { sequences: { input_ids: number[] }[] };
  return Math.max(...golden.sequences.map((s) => s.input_ids.length));
}

const supported = allVariants().filter((v) => isSupported(v, device));
const loads = coveringChoices(device);

test("every supported variant is in some load", () => {
  for (const v of supported) assert.ok(loads.some((l) => l[v.slot] === v.name), `${v.slot}=${v.name}`);
  assert.ok(loads.length >= 2, `${loads.length} loads`);
});

for (const choice of loads) {
  const forced = Object.fromEntries(OP_SLOTS.filter((s) => choice[s] !== DEFAULT_KERNELS[s]).map((s) => [s, choice[s]]));
  const { tolerance } = choicePrecision(choice);
  for (const path of sets) {
    // f32 choices also run every sequence of the set in one batch (reversed): ragged packed prefills and decode steps
    // of several slots, through the variants. Only on the sets of short sequences, to keep the suite's time: the long
    // ones run batched with the default kernels in golden.test.ts.
    const batched = tolerance === GOLDEN_TOLERANCE.f32 && longestSequence(path) <= BATCHED_MAX_TOKENS;
    for (const together of batched ? [false, true] : [false]) {
      test(`golden ${path} with ${Object.entries(forced).map(([s, v]) => `${s}=${v}`).join(", ")} (tolerance ${tolerance})${together ? ", all sequences in one batch" : ""}`, async (t) => {
        const dir = nodeModelDir(path);
        const n = JSON.parse(await dir.readText("golden.json")).sequences.length;
        const model = await Qwen2Model.load(device, dir, { maxSeqLen: 1100, maxBatch: together ? n : 1, kernels: choice });
        try {
          assert.deepEqual(model.kernelChoice, choice);
          const report = await runGoldenCheck(model, dir, { tolerance, batchOrder: together ? [...Array(n).keys()].reverse() : undefined });
          const worst = report.rows.reduce((a, b) => (b.relError > a.relError ? b : a));
          t.diagnostic(`worst ${worst.tensor} (seq${worst.sequence}) rel ${worst.relError.toExponential(2)}`);
          assert.ok(report.ok, `${path}: ${firstDivergence(report)}`);
          if (tolerance === GOLDEN_TOLERANCE.f32) {
            for (const s of report.sequences) assert.equal(s.greedy.compared, s.greedy.want.length, `seq${s.sequence}: ${s.greedy.note}`);
          }
        } finally {
          model.destroy();
        }
      });
    }
  }
}
