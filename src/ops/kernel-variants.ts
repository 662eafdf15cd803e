// Every kernel variant of every op slot, and how a choice of them (by name) becomes the kernels a model runs.
import type { AttentionVariant } from "./attention.ts";
import { ONLINE_DECODE, ONLINE_PREFILL } from "./attention-online.ts";
import { SPLITKV_DECODE } from "./attention-splitkv.ts";
import { TILED_PREFILL as TILED_ATTENTION_PREFILL } from "./attention-tiled.ts";
import { SEPARATE_SWIGLU, SPLITK_SUBGROUP_SWIGLU, SPLITK_SWIGLU, type SwiGluVariant } from "./gate-up-swiglu.ts";
import type { LinearVariant } from "./linear.ts";
import { SEPARATE_LM_HEAD, SPLITK_ARGMAX, SPLITK_SUBGROUP_ARGMAX, type LmHeadVariant } from "./lm-head.ts";
import { BLOCKS_DECODE, BLOCKS_PREFILL, ROWS_DECODE, ROWS_PREFILL } from "./linear-rows.ts";
import { forDevice, SUBGROUP_MATRIX_PREFILL } from "./linear-subgroup-matrix.ts";
import { SPLITK_DECODE, SPLITK_SUBGROUP_DECODE } from "./linear-splitk.ts";
import { TILED_F16_PREFILL, TILED_PREFILL } from "./linear-tiled.ts";
import { GOLDEN_TOLERANCE, isSupported, OP_SLOTS, pickVariant, type OpSlot, type Precision, type VariantInfo } from "./variant.ts";

/**
 * The decode variants serve the one-row steps too (linear.vector, chosen apart: what is fastest for one sequence
 * is not what is fastest for a batch of them).
 */
const vectorOf = (v: LinearVariant): LinearVariant => ({ ...v, slot: "linear.vector" });

// Mutable: a user's kernel (`r3gpu tune --kernel`) joins the candidates for the life of the process.
export const LINEAR_VARIANTS: LinearVariant[] = [
  ...[ROWS_DECODE, BLOCKS_DECODE, SPLITK_DECODE, SPLITK_SUBGROUP_DECODE].map(vectorOf),
  ROWS_DECODE, ROWS_PREFILL, BLOCKS_DECODE, BLOCKS_PREFILL, SPLITK_DECODE, SPLITK_SUBGROUP_DECODE, TILED_PREFILL, TILED_F16_PREFILL,
  SUBGROUP_MATRIX_PREFILL,
];
export const ATTENTION_VARIANTS: AttentionVariant[] = [ONLINE_DECODE, SPLITKV_DECODE, ONLINE_PREFILL, TILED_ATTENTION_PREFILL];
export const SWIGLU_VARIANTS: readonly SwiGluVariant[] = [SEPARATE_SWIGLU, SPLITK_SWIGLU, SPLITK_SUBGROUP_SWIGLU];
export const LM_HEAD_VARIANTS: readonly LmHeadVariant[] = [SEPARATE_LM_HEAD, SPLITK_ARGMAX, SPLITK_SUBGROUP_ARGMAX];

/** Every variant of every slot, the user's included. */
export function allVariants(): VariantInfo[] {
  return [...LINEAR_VARIANTS, ...ATTENTION_VARIANTS, ...SWIGLU_VARIANTS, ...LM_HEAD_VARIANTS];
}

/** A variant name per op slot. */
export type KernelChoice = Record<OpSlot, string>;

/** Today's kernels: what runs where nothing was measured or asked for. */
export const DEFAULT_KERNELS: KernelChoice = {
  "linear.vector": "rows", "linear.decode": "rows", "linear.prefill": "rows", "attention.decode": "online", "attention.prefill": "online",
  "swiglu.decode": "separate", "lm_head.decode": "separate",
};

export interface ModelKernels {
  linear: { vector: LinearVariant; decode: LinearVariant; prefill: LinearVariant };
  attention: { decode: AttentionVariant; prefill: AttentionVariant };
  swiglu: { decode: SwiGluVariant };
  lmHead: { decode: LmHeadVariant };
}

/** The variants named by `choice` (DEFAULT_KERNELS for the slots it leaves out), checked against the device. */
export function resolveKernels(device: GPUDevice, choice: Partial<KernelChoice> = {}): ModelKernels {
  const names = { ...DEFAULT_KERNELS, ...choice };
  // forDevice: the subgroup-matrix variant takes the matrix sizes the adapter has.
  const linear = (slot: OpSlot) => forDevice(pickVariant(LINEAR_VARIANTS, slot, names[slot], device), device);
  const attention = (slot: OpSlot) => pickVariant(ATTENTION_VARIANTS, slot, names[slot], device);
  return {
    linear: { vector: linear("linear.vector"), decode: linear("linear.decode"), prefill: linear("linear.prefill") },
    attention: { decode: attention("attention.decode"), prefill: attention("attention.prefill") },
    swiglu: { decode: pickVariant(SWIGLU_VARIANTS, "swiglu.decode", names["swiglu.decode"], device) },
    lmHead: { decode: pickVariant(LM_HEAD_VARIANTS, "lm_head.decode", names["lm_head.decode"], device) },
  };
}

/** "linear.decode=splitk,attention.decode=splitkv" (R3GPU_KERNELS, --kernels) as a choice; a bad entry names itself. */
export function parseKernelList(text: string, where = "R3GPU_KERNELS"): Partial<KernelChoice> {
  const out: Partial<KernelChoice> = {};
  for (const entry of text.split(",").map((e) => e.trim()).filter(Boolean)) {
    const [slot, name, extra] = entry.split("=").map((s) => s.trim());
    if (!OP_SLOTS.includes(slot as OpSlot) || !name || extra !== undefined) {
      throw new Error(`${where}: "${entry}" is not slot=variant; the slots are ${OP_SLOTS.join(", ")}`);
    }
    const known = allVariants().filter((v) => v.slot === slot).map((v) => v.name);
    if (!known.includes(name)) throw new Error(`${where}: ${slot} has no variant "${name}" (it has ${known.join(", ")})`);
    out[slot as OpSlot] = name;
  }
  return out;
}

/** The variants of `slot` this device can run. */
export function supportedVariants(device: GPUDevice, slot: OpSlot): VariantInfo[] {
  return allVariants().filter((v) => v.slot === slot && isSupported(v, device));
}

/** The precision a choice computes in (f16 when any slot's variant does, naming those slots) and its golden tolerance. */
export function choicePrecision(choice: Partial<KernelChoice>): { precision: Precision; tolerance: number; f16: string[] } {
  const f16 = OP_SLOTS.filter((slot) => allVariants().some((v) => v.slot === slot && v.name === choice[slot] && v.precision === "f16"))
    .map((slot) => `${slot}=${choice[slot]}`);
  const precision: Precision = f16.length > 0 ? "f16" : "f32";
  return { precision, tolerance: GOLDEN_TOLERANCE[precision], f16 };
}
