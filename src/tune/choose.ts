// How a model's kernel variants are chosen at load: forced ones first, then a cached tuning result for this adapter
// and shape, then a fresh measurement (when tuning is asked for), else static defaults for the adapter's class.
import { resolveKernels, type KernelChoice } from "../ops/kernel-variants.ts";
import type { Precision } from "../ops/variant.ts";
import { deviceLimits, stepClasses, tuneKey, type TuneCache } from "./cache.ts";
import { staticKernels } from "./defaults.ts";
import { tuneKernels, type TuneOptions, type TuneReport, type TuneTarget } from "./tuner.ts";

/** How long tuning at a model load may take before it settles for what it has measured. */
export const LOAD_TUNE_BUDGET_SECONDS = 60;

export interface ModelTuneOptions extends Omit<TuneOptions, "fixed"> {
  cache?: TuneCache;
  /** Measure again even where the cache has a result (and replace it). */
  refresh?: boolean;
}

export interface ModelTuneReport extends Partial<TuneReport> {
  /** "measured" at this load, or taken from the "cache". */
  source: "measured" | "cache";
  choice: KernelChoice;
  key?: string;
  where?: string;
}

export async function chooseKernels(t: TuneTarget, opts: { kernels?: Partial<KernelChoice>; tune?: boolean | ModelTuneOptions }):
  Promise<{ choice: KernelChoice; report?: ModelTuneReport }> {
  const { device } = t.kernels;
  const info = device.adapterInfo ?? {};
  const fixed = opts.kernels ?? {};
  if (!opts.tune) return { choice: { ...staticKernels(device, info), ...fixed } };
  const tune: ModelTuneOptions = opts.tune === true ? {} : opts.tune;
  const precision: Precision = tune.precision ?? "f32";
  const dtype = t.weights.layers[0]?.self_attn.qkv_proj.weight.dtype ?? t.weights.embed_tokens.dtype;
  const { hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, tieWordEmbeddings } = t.cfg;
  const key = tune.cache && await tuneKey({
    adapter: { vendor: info.vendor ?? "", architecture: info.architecture ?? "", description: info.description ?? "" },
    features: [...device.features], limits: deviceLimits(device),
    shape: { hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads, headDim, vocabSize, tieWordEmbeddings, ...stepClasses(t) },
    dtype, precision, fixed,
  });
  if (key && !tune.refresh) {
    const cached = await tune.cache!.read(key);
    // A record naming a variant this build no longer has is measured again.
    if (cached && canResolve(device, cached.choice)) {
      return { choice: { ...cached.choice, ...fixed }, report: { source: "cache", choice: cached.choice, results: cached.results, key, where: tune.cache!.where } };
    }
  }
  const report = await tuneKernels(t, { budgetSeconds: LOAD_TUNE_BUDGET_SECONDS, ...tune, precision, fixed });
  if (key) await tune.cache!.write(key, { choice: report.choice, results: report.results, date: new Date().toISOString() });
  return { choice: report.choice, report: { ...report, source: "measured", key, where: tune.cache?.where } };
}

function canResolve(device: GPUDevice, choice: KernelChoice): boolean {
  try {
    resolveKernels(device, choice);
    return true;
  } catch {
    return false;
  }
}
