// The subgroup-matrix linear kernel (shaders/linear_subgroup_matrix.wgsl), variant "subgroup_matrix" of
// linear.prefill: the GPU's matrix units (tensor cores, simdgroup matrices, XMX) through Dawn's experimental
// chromium-experimental-subgroup-matrix feature.
//
// UNTESTED: no adapter here has the feature (lavapipe lists no subgroupMatrixConfigs, Deno's wgpu has no such
// feature), so the shader has never been compiled. The device does not ask for the feature yet either
// (src/gpu/device.ts), and Dawn exposes experimental features only with its allow_unsafe_apis toggle: until both
// change, `requires` keeps the variant out of every run and test.
//
// Which matrix sizes and types exist is the adapter's: the registered variant is the f16 16 x 16 x 16 one (NVIDIA,
// AMD), and resolveKernels swaps it, at load, for the variant on the best config the device lists (forDevice).
import { defineKernel } from "../gpu/kernel.ts";
import { LINEAR_BINDINGS, LINEAR_UNIFORMS, type LinearVariant } from "./linear.ts";
import { tileGrid } from "./linear-tiled.ts";

/** One entry of GPUAdapterInfo.subgroupMatrixConfigs: left and right matrices of componentType, results of resultComponentType. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

const FEATURE = "chromium-experimental-subgroup-matrix";
/** The workgroup's output tile (32 x 32: 2 x 2 fragments of 16 x 16, 4 x 4 of 8 x 8) and K tile. */
const TILE = { BM: 32, BN: 32, BK: 32 };

/** f16 or f32 inputs with f32 results (the sums stay f32), and fragments that divide the tiles. */
function usable(c: SubgroupMatrixConfig): boolean {
  return (c.componentType === "f16" || c.componentType === "f32") && c.resultComponentType === "f32" &&
    TILE.BM % c.M === 0 && TILE.BN % c.N === 0 && TILE.BK % c.K === 0;
}

const variants = new Map<string, LinearVariant>();

/** The variant on one config (declared once per config). */
export function subgroupMatrixVariant(c: SubgroupMatrixConfig): LinearVariant {
  if (!usable(c)) throw new Error(`subgroup_matrix: config ${JSON.stringify(c)} is not one this kernel can use`);
  const key = `${c.componentType}.${c.M}x${c.N}x${c.K}`;
  let v = variants.get(key);
  if (!v) {
    const f16 = c.componentType === "f16";
    const member = defineKernel({
      name: `linear.subgroup_matrix.${key}`,
      shader: "linear_subgroup_matrix",
      weights: true,
      // A multiple of every adapter's subgroupMaxSize (32, or 64 on AMD), as the feature requires: 4 or 2 subgroups.
      workgroupSize: 128,
      constants: { SM: c.M, SN: c.N, SK: c.K, ...TILE },
      overrides: { ACCUMULATE: "bool" },
      flags: ["F16"],
      defines: f16 ? ["F16"] : [],
      bindings: LINEAR_BINDINGS,
      uniforms: LINEAR_UNIFORMS,
    });
    v = {
      // f16 inputs: the tiled_f16 bound covers it (x and W rounded to f16; the matrix units' products are exact).
      slot: "linear.prefill", name: "subgroup_matrix", precision: f16 ? "f16" : "f32",
      requires: [FEATURE, "subgroups", ...(f16 ? ["shader-f16"] : [])],
      about: `subgroup matrices ${c.M}x${c.N}x${c.K} of ${c.componentType} with f32 results (UNTESTED), ` +
        `workgroup tiles of ${TILE.BM} x ${TILE.BN}, K tiles of ${TILE.BK} in workgroup memory`,
      members: [member],
      member: () => member,
      grid: tileGrid,
    };
    variants.set(key, v);
  }
  return v;
}

/** The registered variant: f16 16 x 16 x 16 with f32 results. */
export const SUBGROUP_MATRIX_PREFILL = subgroupMatrixVariant({ componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 });

/** The configs of the device's adapter this kernel can use, best first: f16 inputs (the fast path), then larger fragments. */
export function subgroupMatrixConfigs(device: GPUDevice): SubgroupMatrixConfig[] {
  const info = device.adapterInfo as GPUAdapterInfo & { subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] };
  const size = (c: SubgroupMatrixConfig) => c.M * c.N * c.K;
  return [...(info.subgroupMatrixConfigs ?? [])].filter(usable)
    .sort((a, b) => Number(b.componentType === "f16") - Number(a.componentType === "f16") || size(b) - size(a));
}

/** `v`, or for the subgroup-matrix variant the one on the best config of the device (what is picked at load). */
export function forDevice(v: LinearVariant, device: GPUDevice): LinearVariant {
  if (v !== SUBGROUP_MATRIX_PREFILL) return v;
  const [best] = subgroupMatrixConfigs(device);
  if (!best) {
    throw new Error(`linear.prefill=subgroup_matrix: the adapter lists no subgroup-matrix config with f16 or f32 inputs, ` +
      `f32 results and fragments dividing ${TILE.BM} x ${TILE.BN} x ${TILE.BK}`);
  }
  return subgroupMatrixVariant(best);
}
