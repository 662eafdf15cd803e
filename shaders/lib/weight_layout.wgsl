// The load-time layout of weight matrices, prepended (with weights_<dtype>.wgsl) to every kernel that reads
// weights. W_LANES, W_GROUPS and W_BLOCK come from src/gpu/layout.ts, which explains the layout: the quad (8
// elements) kq of row blk * W_BLOCK + r * W_LANES + lane sits at ((blk * nq + kq) * W_GROUPS + r) * W_LANES + lane,
// nq = quads per row.
fn w_quad(row: u32, kq: u32, nq: u32) -> u32 {
  let blk = row / W_BLOCK;
  let r = (row % W_BLOCK) / W_LANES;
  let lane = row % W_LANES;
  return ((blk * nq + kq) * W_GROUPS + r) * W_LANES + lane;
}

// A quad holds 4 pairs (it is one vec4u of 16-bit pairs).
fn w_pair(row: u32, pair: u32, nq: u32) -> u32 {
  return w_quad(row, pair / 4u, nq) * 4u + pair % 4u;
}
