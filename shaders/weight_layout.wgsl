// The load-time layout of weight matrices (prepended with weights_<dtype>.wgsl to every kernel that
// reads weights). A matrix [rows, K] is stored as "pairs" (two consecutive elements of a row) grouped
// in quads (4 pairs = 8 elements). Rows come in blocks of 32 = 4 groups x 8 lanes: the quad kq of row
// (blk*32 + r*8 + lane) sits at ((blk * nq + kq) * 4 + r) * 8 + lane, nq = quads per row (K padded
// to a multiple of 8 with zeros, rows to a multiple of 32).
// Why: the linear kernels give each invocation 4 rows (r = 0..3, same lane), so for every (kq, r)
// eight neighbouring invocations read eight neighbouring 16-byte quads. On lavapipe that turns
// per-lane gathers into contiguous loads; on GPUs it is a coalesced access.
const W_LANES: u32 = 8u;
const W_GROUPS: u32 = 4u;
const W_BLOCK: u32 = 32u;

fn w_quad(row: u32, kq: u32, nq: u32) -> u32 {
  let blk = row / W_BLOCK;
  let r = (row % W_BLOCK) / W_LANES;
  let lane = row % W_LANES;
  return ((blk * nq + kq) * W_GROUPS + r) * W_LANES + lane;
}

fn w_pair(row: u32, pair: u32, nq: u32) -> u32 {
  return w_quad(row, pair / 4u, nq) * 4u + pair % 4u;
}
