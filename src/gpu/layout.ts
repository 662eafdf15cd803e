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

/**
 * The quantized layouts of weight matrices (shaders/lib/weights_q8.wgsl, weights_q4.wgsl): the quads of the blocked
 * layout above, in the same order, as 8 int8 (Q8) or 8 int4 (Q4) values, with one f16 scale per group of
 * `groupQuads` quads of one row slot. Quad q (its index in the blocked layout) lies in tile q / tileQuads, which
 * stores its tileQuads quads in order, then `block` f16 scales: the scale of quad q is scale q % block of its tile,
 * shared by the quads q, q + block, q + 2 block, q + 3 block of the tile (the next 4 quads along K of one row, 32
 * elements, wherever the row's quads per row nq is a multiple of 4; elsewhere a group may end one block and start the
 * next, the same row slot in both).
 *
 * Why: a quantized quad stays where a BF16 one is, so every kernel that reads weights by quad index reads these
 * through the same accessors (load_w8, load_w2) without knowing nq; a tile is whole 16-byte words, and the scales of
 * the quads a kernel reads together (one per row slot) are neighbours.
 */
export const QUANT_LAYOUT = {
  groupQuads: 4,
  /** Quads per tile: groupQuads x block. */
  tileQuads: 128,
  /** Bytes of one tile: the quads' integers, then block f16 scales. */
  tileBytes: { Q8: 128 * 8 + 64, Q4: 128 * 4 + 64 },
} as const;

/** Constants every shader sees, by their WGSL names. */
export const SHADER_CONSTANTS: Record<string, number> = {
  W_LANES: WEIGHT_LAYOUT.lanes,
  W_GROUPS: WEIGHT_LAYOUT.groups,
  W_BLOCK: WEIGHT_LAYOUT.block,
  Q_GROUP_QUADS: QUANT_LAYOUT.groupQuads,
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
