// The quantized comparison of `r3gpu check --quant` on the shared golden sets (random weights): the cosine per
// position is 1 to float32 rounding for the unquantized model (so it reads the right rows of the right tensors); q8
// and q4 meet their thresholds (MIN_COSINE) at every position of both sets, and a stricter threshold gives a failing
// verdict that names the first position under it. The Search-R3 golden embeddings the same way, and the command's
// report.
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

for (const quant of ["q8", "q4"] as const) {
  for (const [set, where] of [["tiny-public", embeddedModelDir()], ["small-public", join(goldenDir(), "small-public")]]) {
    test(`${quant} on ${set}: cosine to the golden >= ${MIN_COSINE[quant]} at every position of every sequence`, async () => {
      const goldenFolder = nodeModelDir(where);
      const model = await Qwen2Model.load(device, goldenFolder, { maxSeqLen: 1040, tune: false, quant });
      try {
        const report = await runGoldenCheck(model, goldenFolder, { minCosine: MIN_COSINE[quant] });
        assert.equal(report.ok, true, firstDivergence(report));
        for (const s of report.sequences) {
          assert.ok(s.agreement!.minCosine >= MIN_COSINE[quant], `seq${s.sequence}: min cosine ${s.agreement!.minCosine}`);
          // q8 keeps every sequence's top-1 (q4 changes tiny-public's 300-token one: its top two logits are close).
          if (quant === "q8") assert.equal(s.agreement!.top1, true, `seq${s.sequence} top-1`);
        }
      } finally {
        model.destroy();
      }
    });
  }
}

test("the verdict under a threshold: q4 held to 0.9999 fails, naming the first sequence and position under it", async () => {
  const model = await Qwen2Model.load(device, dir, { maxSeqLen: 320, tune: false, quant: "q4" });
  try {
    const minCosine = 0.9999;
    const report = await runGoldenCheck(model, dir, { minCosine });
    const low = report.sequences.filter((s) => s.agreement!.minCosine < minCosine);
    assert.ok(low.length > 0, "int4 weights stay under 0.9999 somewhere");
    assert.equal(report.ok, false);
    assert.match(firstDivergence(report)!, new RegExp(`^seq${low[0].sequence} final_norm_hidden: cosine 0\\.\\d+ to the golden at position \\d+, under ${minCosine}$`));
    const at = Number(/at position (\d+)/.exec(firstDivergence(report)!)![1]);
    assert.ok(low[0].agreement!.cosine[at] < minCosine && low[0].agreement!.cosine.slice(0, at).every((c) => c >= minCosine));
  } finally {
    model.destroy();
  }
});

test("the Search-R3 golden embeddings: within the modes' cosine of the golden (0.999, 0.98), the documents' ranking kept", async () => {
  for (const quant of ["q8", "q4"] as const) {
    const r3 = await SearchR3.load(device, dir, { model: { tune: false, quant }, maxLength: 256, batchSize: 3 });
    try {
      const search = await runSearchGoldenCheck(r3, dir);
      assert.equal(search.queries.length, 3);
      assert.equal(search.documents.length, 3);
      assert.ok(search.minCosine >= MIN_COSINE[quant], `${quant}: min cosine ${search.minCosine}`);
      assert.equal(search.rankingKept, true, `${quant}: ${JSON.stringify(search.rankings)}`);
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
