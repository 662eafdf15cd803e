// Linear layer: y[m, n0 + n] (+)= sum_k x[m, k] * W[n, k] + bias[n0 + n], for m < M, n < rows, with W [rows, K] in
// the layout of lib/weight_layout.wgsl (one part of a weight split across buffers: one dispatch per part, each with
// its own n0). ACCUMULATE adds into y, which is how the residual stream is updated without a separate add.
// Two kernels come from this file: decode (TM = 1, one input row, the matrix-vector product) and prefill (TM > 1
// input rows per invocation, so each weight quad loaded is used TM times).
// Bindings: p, x: f32 [M, K] as vec2 pairs, w: laid-out weight quads, bias: f32 [N] (HAS_BIAS), y: f32 [M, N].
// Work per invocation: W_GROUPS weight rows (blk * W_BLOCK + r * W_LANES + lane, r < W_GROUPS) x TM input rows,
// over all of K, so there is no cross-invocation reduction and no barrier. Grid: x over rows / W_GROUPS
// invocations in workgroups of WG, y over M / TM.
struct Params { M: u32, K: u32, N: u32, n0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2f>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override ACCUMULATE: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let blk = gid.x / W_LANES;
  let lane = gid.x % W_LANES;
  // From workgroup_id, not global_invocation_id.y: the compiler can then see that x's addresses are
  // the same in every invocation, and lavapipe loads them once instead of gathering per lane.
  let m0 = wid.y * TM;
  if (blk * W_BLOCK >= p.rows || m0 >= p.M) { return; }
  let hk = p.K / 2u;
  let nq = (hk + 3u) / 4u;
  let full = hk / 4u;
  // Rows past M read the last valid row; their results are not stored.
  var xbase: array<u32, TM>;
  for (var i = 0u; i < TM; i++) { xbase[i] = min(m0 + i, p.M - 1u) * hk; }

  var acc: array<array<vec2f, W_GROUPS>, TM>;
  for (var kq = 0u; kq < nq; kq++) {
    var xs: array<array<vec2f, 4>, TM>;
    if (kq < full) {
      for (var i = 0u; i < TM; i++) {
        let xb = xbase[i] + kq * 4u;
        xs[i] = array<vec2f, 4>(x[xb], x[xb + 1u], x[xb + 2u], x[xb + 3u]);
      }
    } else {
      // The last, partial quad: its padding weights are zero, but x past K must not be read (it could
      // be anything, and 0 * inf is NaN). A separate branch keeps the guard out of the main loop.
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < 4u; j++) {
          let k = kq * 4u + j;
          xs[i][j] = select(x[xbase[i] + min(k, hk - 1u)], vec2f(0.0), k >= hk);
        }
      }
    }
    let q0 = ((blk * nq + kq) * W_GROUPS) * W_LANES + lane;
    for (var r = 0u; r < W_GROUPS; r++) {
      let wq = load_w8(q0 + r * W_LANES);
      for (var i = 0u; i < TM; i++) {
        acc[i][r] += xs[i][0] * wq[0] + xs[i][1] * wq[1] + xs[i][2] * wq[2] + xs[i][3] * wq[3];
      }
    }
  }
  for (var r = 0u; r < W_GROUPS; r++) {
    let n = blk * W_BLOCK + r * W_LANES + lane;
    if (n >= p.rows) { continue; }
    var b = 0.0;
#if HAS_BIAS
    b = bias[p.n0 + n];
#endif
    for (var i = 0u; i < TM; i++) {
      let m = m0 + i;
      if (m >= p.M) { break; }
      let out = m * p.N + p.n0 + n;
      var v = acc[i][r].x + acc[i][r].y + b;
      if (ACCUMULATE) { v += y[out]; }
      y[out] = v;
    }
  }
}
