// Kernel variants chosen without measuring (`--no-tune`, or a library load without `tune`), by adapter class.
// A CPU driver keeps today's kernels, which were tuned on one, but for the linear layers of several input rows
// (batched decode steps, prefill), where "blocks" took half the time of "rows" or less on lavapipe (bench/NOTES.md,
// "Batching"); for GPUs the preferences follow the known-good designs
// (split-K matrix-vector products, tiled matrix products, flash-decoding): estimates until measured on each card,
// which the tuner does.
import { allVariants, DEFAULT_KERNELS, type KernelChoice } from "../ops/kernel-variants.ts";
import { isSupported, OP_SLOTS, type OpSlot } from "../ops/variant.ts";

/** Most preferred first, per slot, for a GPU; the first that exists and the device supports is taken. */
const GPU_PREFERENCES: Record<OpSlot, string[]> = {
  "linear.vector": ["splitk_subgroup", "splitk", "rows"],
  "linear.decode": ["splitk_subgroup", "splitk", "rows"],
  "linear.prefill": ["tiled", "rows"],
  "attention.decode": ["splitkv", "online"],
  "attention.prefill": ["tiled", "online"],
  "swiglu.decode": ["splitk_subgroup", "splitk", "separate"],
  "lm_head.decode": ["splitk_subgroup", "splitk", "separate"],
};

/** On a CPU adapter: today's kernels but these. */
export const CPU_KERNELS: Partial<KernelChoice> = { "linear.decode": "blocks", "linear.prefill": "blocks" };

/** Software adapters: their figures are a CPU's (Mesa's llvmpipe/lavapipe, SwiftShader, WARP). */
export function isCpuAdapter(info: { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean }): boolean {
  if (info.isFallbackAdapter) return true;
  return /llvmpipe|lavapipe|swiftshader|softpipe|warp|\bcpu\b/i.test(`${info.vendor ?? ""} ${info.architecture ?? ""} ${info.description ?? ""}`);
}

export function staticKernels(device: GPUDevice, adapterInfo: Parameters<typeof isCpuAdapter>[0]): KernelChoice {
  if (isCpuAdapter(adapterInfo)) return { ...DEFAULT_KERNELS, ...CPU_KERNELS };
  const out = { ...DEFAULT_KERNELS };
  for (const slot of OP_SLOTS) {
    const pick = GPU_PREFERENCES[slot].find((name) => allVariants().some((v) => v.slot === slot && v.name === name && v.precision === "f32" && isSupported(v, device)));
    if (pick) out[slot] = pick;
  }
  return out;
}
