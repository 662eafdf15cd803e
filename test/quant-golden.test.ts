// The quantized comparison of `r3gpu check --quant` on the embedded tiny model (random weights, as the shared sets):
// the cosine per position is 1 to float32 rounding for the unquantized model (so it reads the right rows of the right
// tensors); q8 meets its threshold (MIN_COSINE) at every position of both shared golden sets; q4, which misses its
// threshold on these random-weight sets (README.md "Quantized weights"), stays within the floors below, what int4
// weights measure with margin (a load or kernel that read a wrong weight gives cosines near 0), and its verdict
// follows the threshold, naming the first position under it. The Search-R3 golden embeddings the same way, and the
// command's report.
import { test } from "node:test";
import assert from "node:assert/strict";
import { firstDivergence, runGoldenCheck } from "../src/check/golden.ts";
import { runSearchGoldenCheck } from "../src/check/search-golden.ts";
import { run } from "../src/cli/main.ts";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { MIN_COSINE, type Quantization } from "../src/model/quant.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { SearchR3 } from "../src/search/searchr3.ts";
import { join } from "node:path";
import { embeddedModelDir, goldenDir } from "./shared-paths.ts";

const { device } = await nodeGpu();
const dir = nodeModelDir(embeddedModelDir());

test("unquantized: final_norm_hidden's cosine to the golden is 1 within 1e-6 at every position, the comparison passes", async () => {
  const model = await Qwen2Model.load(device, dir, { maxSeqLen: 320, tune: false });
  try {
    const report = await runGoldenCheck(model, dir, { minCosine: MIN_COSINE.q8 });
    assert.equal(report.ok, true, firstDivergence(report));
    for (const s of report.sequences) {
      const a = s.agreement!;
      assert.equal(a.cosine.length, s.length, `seq${s.sequence}: a cosine per position`);
      assert.ok(a.minCosine >= 1 - 1e-6, `seq${s.sequence}: min cosine ${a.minCosine}`);
      assert.equal(a.top1, true, `seq${s.sequence} top-1`);
    }
  } finally {
    model.destroy();
  }
});

for (const [set, where] of [["tiny-public", embeddedModelDir()], ["small-public", join(goldenDir(), "small-public")]]) {
  test(`q8 on ${set}: cosine to the golden >= ${MIN_COSINE.q8} at every position of every sequence, top-1 kept`, async () => {
    const goldenFolder = nodeModelDir(where);
    const model = await Qwen2Model.load(device, goldenFolder, { maxSeqLen: 1040, tune: false, quant: "q8" });
    try {
      const report = await runGoldenCheck(model, goldenFolder, { minCosine: MIN_COSINE.q8 });
      assert.equal(report.ok, true, firstDivergence(report));
      for (const s of report.sequences) {
        assert.ok(s.agreement!.minCosine >= MIN_COSINE.q8, `seq${s.sequence}: min cosine ${s.agreement!.minCosine}`);
        assert.equal(s.agreement!.top1, true, `seq${s.sequence} top-1`);
      }
    } finally {
      model.destroy();
    }
  });
}

// q4's floors: the least cosine at any position, the least mean over a sequence's positions.
const Q4_FLOOR = { min: 0.85, mean: 0.95 };

test(`q4: cosine to the golden over ${Q4_FLOOR.min} at every position (mean over ${Q4_FLOOR.mean}), the verdict that of ${MIN_COSINE.q4}`, async () => {
  const model = await Qwen2Model.load(device, dir, { maxSeqLen: 320, tune: false, quant: "q4" });
  try {
    const report = await runGoldenCheck(model, dir, { minCosine: MIN_COSINE.q4 });
    for (const s of report.sequences) {
      const a = s.agreement!;
      const mean = a.cosine.reduce((x, y) => x + y, 0) / a.cosine.length;
      assert.ok(a.minCosine >= Q4_FLOOR.min && mean >= Q4_FLOOR.mean, `seq${s.sequence}: min ${a.minCosine}, mean ${mean}`);
      assert.ok(a.top5 >= 0 && a.top5 <= 5 && a.greedy >= 0 && a.greedy <= s.greedy.want.length);
    }
    const low = report.sequences.filter((s) => s.agreement!.minCosine < MIN_COSINE.q4);
    assert.equal(report.ok, low.length === 0);
    if (low.length > 0) assert.match(firstDivergence(report)!, new RegExp(`^seq${low[0].sequence} final_norm_hidden: cosine 0\\.\\d+ to the golden at position \\d+, under ${MIN_COSINE.q4}$`));
  } finally {
    model.destroy();
  }
});

test("the Search-R3 golden embeddings: q8 within cosine 0.999 of the golden, the documents' ranking kept; q4 within 0.97", async () => {
  for (const quant of ["q8", "q4"] as const) {
    const r3 = await SearchR3.load(device, dir, { model: { tune: false, quant }, maxLength: 256, batchSize: 3 });
    try {
      const search = await runSearchGoldenCheck(r3, dir);
      assert.equal(search.queries.length, 3);
      assert.equal(search.documents.length, 3);
      assert.ok(search.minCosine >= (quant === "q8" ? MIN_COSINE.q8 : 0.97), `${quant}: min cosine ${search.minCosine}`);
      if (quant === "q8") assert.equal(search.rankingKept, true, JSON.stringify(search.rankings));
    } finally {
      r3.destroy();
    }
  }
});

test("r3gpu check --quant q8 prints the cosines, the agreement and the Search-R3 embeddings, PASS, and exits 0", async () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void lines.push(args.join(" "));
  let code: number;
  try {
    code = await run(["check", embeddedModelDir(), "--quant", "q8", "--no-tune"]);
  } finally {
    console.log = log;
  }
  const out = lines.join("\n");
  assert.match(out, /^seq3 \(300 tokens\): cosine min 0\.\d{5} \(mean 0\.\d{5}\) (ok|LOW); top-1 (same|differs), top-5 \d\/5 shared, greedy \d+\/20 steps/m);
  assert.match(out, /^Search-R3 golden embeddings \(q8\): cosine to the golden, queries( 0\.\d{5}){3}, documents( 0\.\d{5}){3}: min .* documents ranked per query/m);
  assert.doesNotMatch(out, /^FAIL/m);
  assert.match(out, /^PASS \(q8\): cosine >= 0\.999 at every position$/m);
  assert.equal(code, 0, out);
});
