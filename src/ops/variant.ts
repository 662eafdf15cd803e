// Kernel variants: the interchangeable implementations of one op slot (a linear layer at a one-row step, at a
// decode step of several sequences, at prefill; the
// attention at decode, at prefill; the MLP's gate/up projection and SwiGLU at decode, and the LM head and the
// greedy argmax at decode, fused or not). Every variant of a slot computes the same thing through the same bindings;
// which one runs is chosen per model by measurement on the adapter (src/tune/) or forced by name (R3GPU_KERNELS).

export type OpSlot =
  | "linear.vector" | "linear.decode" | "linear.prefill" | "attention.decode" | "attention.prefill" | "swiglu.decode" | "lm_head.decode";
export const OP_SLOTS: readonly OpSlot[] = [
  "linear.vector", "linear.decode", "linear.prefill", "attention.decode", "attention.prefill", "swiglu.decode", "lm_head.decode",
];

/** "f16" variants compute in half precision and are chosen only when the user allows it (--precision f16). */
export type Precision = "f32" | "f16";

/**
 * The golden tolerance a model running variants of a precision is held to, as a fraction of each tensor's
 * max|reference|: f32, the golden README's 1e-4; f16, its 1e-2 for a float16 engine (each f16 rounding is a relative
 * 2^-11, and a layer chains four linears whose errors the residual stream sums: measured 2.5e-3 to 3.2e-3 on the
 * shared sets, see test/kernels-prefill-linear.test.ts).
 */
export const GOLDEN_TOLERANCE: Record<Precision, number> = { f32: 1e-4, f16: 1e-2 };

export interface VariantInfo {
  slot: OpSlot;
  /** The name R3GPU_KERNELS and --kernels take (e.g. "splitk"). */
  name: string;
  precision: Precision;
  /** Adapter features it needs (e.g. "subgroups", "shader-f16"). */
  requires: readonly string[];
  /** One line for the workbench: what the variant does differently. */
  about: string;
}

/** Rows at which a step's linear layers and attention switch from the decode slot's variant to the prefill slot's. */
export const DECODE_MAX_ROWS = 16;

/** Decode attention is tuned at up to this many keys: `r3gpu tune`'s default context, and the least `check` loads. */
export const TUNED_CONTEXT = 1024;

/** Whether the device has every feature the variant needs. */
export function isSupported(v: VariantInfo, device: GPUDevice): boolean {
  return v.requires.every((f) => device.features.has(f as GPUFeatureName));
}

/** A variant forced by name: unknown and unsupported names are errors that list the valid ones. */
export function pickVariant<V extends VariantInfo>(variants: readonly V[], slot: OpSlot, name: string, device: GPUDevice): V {
  const mine = variants.filter((v) => v.slot === slot);
  const v = mine.find((x) => x.name === name);
  const names = mine.map((x) => `${x.name}${isSupported(x, device) ? "" : ` (needs ${x.requires.join(", ")})`}`).join(", ");
  if (!v) throw new Error(`${slot}=${name}: no such kernel variant; ${slot} has ${names}`);
  if (!isSupported(v, device)) throw new Error(`${slot}=${name}: this adapter lacks ${v.requires.filter((f) => !device.features.has(f as GPUFeatureName)).join(", ")}; ${slot} has ${names}`);
  return v;
}
