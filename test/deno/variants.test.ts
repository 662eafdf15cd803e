// The kernel variants under Deno (wgpu: shader-f16, no subgroups): every variant its adapter supports against the
// float64 references at the embedded model's shapes and at Qwen2.5-0.5B's (src/check/kernel-check.ts, the checks
// `r3gpu tune --kernel` runs), and the golden checks of the embedded model and of tiny-public with the choices that
// together run every variant (f32 ones within 1e-4 x max|ref|, f16 ones within f16's tolerance).
import { firstDivergence, runGoldenCheck } from "../../src/check/golden.ts";
import { checkVariantFloat64, coveringChoices } from "../../src/check/kernel-check.ts";
import { Kernels } from "../../src/gpu/kernel.ts";
import { webGpu } from "../../src/gpu/web.ts";
import { denoModelDir } from "../../src/io/deno.ts";
import { Qwen2Model } from "../../src/model/qwen2.ts";
import { QWEN25_SHAPES } from "../../src/model/shapes.ts";
import { allVariants, choicePrecision, DEFAULT_KERNELS } from "../../src/ops/kernel-variants.ts";
import { isSupported, OP_SLOTS } from "../../src/ops/variant.ts";

const repo = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const goldenRoot = Deno.env.get("R3GPU_GOLDEN_DIR") ?? `${repo}/../shared/golden`;
const sets = [`${repo}/models/tiny-qwen2`, `${goldenRoot}/tiny-public`];
const { device } = await webGpu();
const kernels = new Kernels(device);
const supported = allVariants().filter((v) => isSupported(v, device));
console.log(`variants on this adapter: ${supported.map((v) => `${v.slot}=${v.name}`).join(", ")}`);

const tinyModel = await Qwen2Model.load(device, denoModelDir(sets[0]), { maxSeqLen: 16 });
const tinyConfig = tinyModel.config;
tinyModel.destroy();

for (const [shape, cfg] of [["the embedded model", tinyConfig], ["Qwen2.5-0.5B", QWEN25_SHAPES["qwen2.5-0.5b"]]] as const) {
  for (const v of supported) {
    Deno.test(`deno ${v.slot}=${v.name} against float64 at ${shape}'s shapes`, async () => {
      const cases = await checkVariantFloat64(kernels, v, cfg);
      const bad = cases.filter((c) => !c.ok);
      if (cases.length === 0 || bad.length > 0) throw new Error(bad.map((c) => `${c.what}: ${c.error}`).join("; ") || "no cases");
    });
  }
}

for (const choice of coveringChoices(device)) {
  const forced = OP_SLOTS.filter((s) => choice[s] !== DEFAULT_KERNELS[s]).map((s) => `${s}=${choice[s]}`).join(", ");
  const { tolerance } = choicePrecision(choice);
  for (const path of sets) {
    Deno.test(`deno golden ${path} with ${forced} (tolerance ${tolerance})`, async () => {
      const dir = denoModelDir(path);
      const model = await Qwen2Model.load(device, dir, { maxSeqLen: 1100, kernels: choice });
      try {
        const report = await runGoldenCheck(model, dir, { tolerance });
        if (!report.ok) throw new Error(`${path}: ${firstDivergence(report)}`);
      } finally {
        model.destroy();
      }
    });
  }
}
