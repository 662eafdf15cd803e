// The golden checks under Deno: its built-in WebGPU (wgpu, not Dawn) and Deno's file API, running the same
// engine code as Node. Every shared golden set and the embedded model must pass.
import { webGpu } from "../../src/gpu/web.ts";
import { denoModelDir } from "../../src/io/deno.ts";
import { Qwen2Model } from "../../src/model/qwen2.ts";
import { firstDivergence, runGoldenCheck } from "../../src/check/golden.ts";

const repo = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const goldenRoot = Deno.env.get("R3GPU_GOLDEN_DIR") ?? `${repo}/../shared/golden`;
const sets = [`${repo}/models/tiny-qwen2`];
for await (const e of Deno.readDir(goldenRoot)) {
  if (e.isDirectory) {
    try {
      await Deno.stat(`${goldenRoot}/${e.name}/golden.json`);
      sets.push(`${goldenRoot}/${e.name}`);
    } catch { /* not a golden set */ }
  }
}
if (sets.length < 2) throw new Error(`no shared golden sets under ${goldenRoot}`);
console.log(`golden sets: ${sets.join(", ")}`);
const { device, info } = await webGpu();
console.log(`adapter: ${info.description} (${info.features.join(", ")})`);

for (const path of sets) {
  Deno.test(`deno golden ${path}`, async () => {
    const dir = denoModelDir(path);
    const model = await Qwen2Model.load(device, dir, { maxSeqLen: 1100 });
    const report = await runGoldenCheck(model, dir);
    if (!report.ok) throw new Error(`${path}: ${firstDivergence(report)}`);
    const worst = Math.max(...report.rows.map((r) => r.relError));
    console.log(`${path}: ${report.rows.length} tensors, worst rel error ${worst.toExponential(2)}`);
  });
}
