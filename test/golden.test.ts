// Golden checks: every model directory with a golden.json (the embedded model, and each set under
// the shared golden folder, found at run time so a new set is picked up without code changes) must
// match the HF float64 reference within the README's tolerances.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { firstDivergence, runGoldenCheck } from "../src/check/golden.ts";
import { embeddedModelDir, goldenDir } from "./shared-paths.ts";

function goldenSets(): string[] {
  const root = goldenDir();
  assert.ok(existsSync(root), `shared golden folder ${root} not found: put ../shared beside the checkout or set R3GPU_GOLDEN_DIR`);
  const shared = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(root, e.name, "golden.json")))
    .map((e) => join(root, e.name));
  assert.ok(shared.length > 0, `no golden sets (folders with golden.json) under ${root}`);
  return [embeddedModelDir(), ...shared];
}

const sets = goldenSets();
console.log(`golden sets: ${sets.join(", ")}`);
const { device } = await nodeGpu();

async function check(path: string, maxBindingBytes?: number, maxLength?: number) {
  const dir = nodeModelDir(path);
  const model = await Qwen2Model.load(device, dir, { maxSeqLen: 1100, maxBindingBytes });
  const report = await runGoldenCheck(model, dir, { maxLength });
  assert.ok(report.rows.length > 0, "no tensors compared");
  assert.ok(report.ok, `${path}: ${firstDivergence(report)}`);
  return { model, report };
}

for (const path of sets) {
  test(`golden ${path}: hidden states, logits, top-5 and greedy match the HF float64 reference`, async (t) => {
    const { report } = await check(path);
    const worst = report.rows.reduce((a, b) => (b.relError > a.relError ? b : a));
    t.diagnostic(`${report.rows.length} tensors over ${report.sequences.length} sequences; worst ${worst.tensor} ` +
      `(seq${worst.sequence}) rel ${worst.relError.toExponential(2)}`);
    for (const s of report.sequences) assert.equal(s.greedy.compared, s.greedy.want.length, `seq${s.sequence}: ${s.greedy.note}`);
  });

  test(`golden ${path}: weights split across bindings of at most 4 MiB give the same results`, async () => {
    const { model } = await check(path, 4 << 20, 33);
    // The split must really have happened: the embedding table is larger than the forced limit.
    const embedBytes = model.config.vocabSize * model.config.hiddenSize * 2;
    assert.ok(embedBytes > 4 << 20, `embedding of ${embedBytes} bytes does not exceed the forced limit`);
  });
}
