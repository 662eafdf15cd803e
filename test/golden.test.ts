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

async function check(path: string, opts: { maxBindingBytes?: number; maxLength?: number; batchOrder?: (n: number) => number[] } = {}) {
  const dir = nodeModelDir(path);
  const golden = JSON.parse(await dir.readText("golden.json"));
  const n = golden.sequences.length;
  const model = await Qwen2Model.load(device, dir, { maxSeqLen: 1100, maxBindingBytes: opts.maxBindingBytes, maxBatch: opts.batchOrder ? n : 1 });
  try {
    const report = await runGoldenCheck(model, dir, { maxLength: opts.maxLength, batchOrder: opts.batchOrder?.(n) });
    assert.ok(report.rows.length > 0, "no tensors compared");
    assert.ok(report.ok, `${path}: ${firstDivergence(report)}`);
    return { config: model.config, report };
  } finally {
    model.destroy();
  }
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
    const { config } = await check(path, { maxBindingBytes: 4 << 20, maxLength: 33 });
    // The split must really have happened: the embedding table is larger than the forced limit.
    const embedBytes = config.vocabSize * config.hiddenSize * 2;
    assert.ok(embedBytes > 4 << 20, `embedding of ${embedBytes} bytes does not exceed the forced limit`);
  });
}

// Every sequence of a set together, packed into one batch with ragged lengths (1, 7, 33, 300 and 1000 tokens) and
// no padding, in two orders; their greedy continuations decoded together. The tolerances are the same as alone.
for (const path of sets) {
  for (const [name, order] of [["in order", (n: number) => [...Array(n).keys()]], ["reversed", (n: number) => [...Array(n).keys()].reverse()]] as const) {
    test(`golden ${path}: all sequences in one batch (${name}) match the reference`, async () => {
      const { report } = await check(path, { batchOrder: order });
      assert.ok(report.sequences.length >= 4, `${report.sequences.length} sequences`);
      for (const s of report.sequences) assert.equal(s.greedy.compared, s.greedy.want.length, `seq${s.sequence}: ${s.greedy.note}`);
    });
  }
}
