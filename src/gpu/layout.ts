// The constants that the host, the shaders and the tests must agree on, in one place. Every shader is compiled
// with these as WGSL constants (layoutWgsl), the host's dispatch arithmetic and the weight uploader read them
// here, and the tests build their reference layouts from them.

/**
 * The load-time layout of weight matrices (shaders/lib/weight_layout.wgsl). A matrix [rows, K] is stored as pairs
 * (two consecutive elements of a row) grouped in quads of 4 pairs (8 elements). Rows come in blocks of
 * groups x lanes: the quad kq of row (blk * block + r * lanes + lane) sits at ((blk * nq + kq) * groups + r) * lanes
 * + lane, nq = quads per row (K padded to a multiple of 8 with zeros, rows to a multiple of the block).
 *
 * Why: the decode linear kernel gives each invocation `groups` rows (r = 0..groups-1, same lane), so for every
 * (kq, r) `lanes` neighbouring invocations read neighbouring 16-byte quads: contiguous loads on a CPU driver, a
 * coalesced access on a GPU.
 */
export const WEIGHT_LAYOUT = {
  lanes: 8,
  groups: 4,
  /** Rows per block: groups x lanes. */
  block: 32,
  /** Elements per quad (4 pairs). */
  quadElements: 8,
} as const;

/** Constants every shader sees, by their WGSL names. */
export const SHADER_CONSTANTS: Record<string, number> = {
  W_LANES: WEIGHT_LAYOUT.lanes,
  W_GROUPS: WEIGHT_LAYOUT.groups,
  W_BLOCK: WEIGHT_LAYOUT.block,
};

/** The WGSL declarations of `constants` (u32 values), one line each. */
export function wgslConstants(constants: Record<string, number>): string {
  return Object.entries(constants).map(([name, v]) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`shader constant ${name} = ${v} is not a u32`);
    return `const ${name}: u32 = ${v}u;`;
  }).join("\n");
}

/** The most workgroups a dispatch may have along one dimension (WebGPU's default maxComputeWorkgroupsPerDimension). */
export const MAX_GROUPS_PER_DIMENSION = 65535;
