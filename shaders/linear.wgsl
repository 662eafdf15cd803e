// Linear layer: y[m, n0 + n] (+)= sum_k x[m, k] * W[n, k] + bias[n0 + n], for m < M, n < rows, with W [rows, K] in
// the layout of lib/weight_layout.wgsl (one part of a weight split across buffers: one dispatch per part, each with
// its own n0). ACCUMULATE adds into y, which is how the residual stream is updated without a separate add.
// Its members (src/ops/linear-rows.ts) differ in TM, the input rows per invocation (TM = 1 is the matrix-vector
// product of one sequence's decode step; TM > 1 uses each weight quad loaded TM times), and RB, the blocks of the
// weight layout per invocation: RB = 1 is the "rows" variant, RB = 2 or 4 the "blocks" one, where each x value an
// invocation reads serves 4 RB weight rows instead of 4. Why that matters: a driver that gives every invocation its
// own load of x (a CPU driver vectorizing invocations across SIMD lanes gathers each lane's x apart, uniform or not)
// pays at RB = 1 for 2 TM words of x per weight quad's 4, most of the loads at TM = 8.
// The products are fused multiply-adds in the order of k. A quantized row's scale is read once per group of
// Q_GROUP_QUADS quads along K (load_w8 would read it with every quad).
// Bindings: p, x: f32 [M, K] as vec2 pairs, w: laid-out weight quads, bias: f32 [N] (HAS_BIAS), y: f32 [M, N].
// Work per invocation: rows blk * W_BLOCK + r * W_LANES + lane for blk = g * RB + b (b < RB, r < W_GROUPS), g the
// invocation's group of W_LANES, x TM input rows, over all of K, so there is no cross-invocation reduction and no
// barrier: 4 RB x TM dot products. Grid: x over ceil(blocks / RB) * W_LANES invocations in workgroups of WG, y over
// ceil(M / TM).
struct Params { M: u32, K: u32, N: u32, n0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2f>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override ACCUMULATE: bool = false;
const R: u32 = RB * W_GROUPS;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let lane = gid.x % W_LANES;
  let g = gid.x / W_LANES;
  // From workgroup_id, not global_invocation_id.y: a compiler can then see that x's addresses are the same in every
  // invocation of a workgroup.
  let m0 = wid.y * TM;
  let blocks = (p.rows + W_BLOCK - 1u) / W_BLOCK;
  if (g * RB >= blocks || m0 >= p.M) { return; }
  let hk = p.K / 2u;
  let nq = (hk + 3u) / 4u;
  let full = hk / 4u;

  var acc: array<array<f32, R>, TM>;
  // Each row's scale (quantized weights; 1 for float ones), read when a group of Q_GROUP_QUADS quads begins.
  var d: array<f32, R>;
  for (var kq = 0u; kq < nq; kq++) {
    // Rows past M read the last valid row; their results are not stored.
    var xs: array<array<vec2f, 4>, TM>;
    for (var i = 0u; i < TM; i++) {
      let xb = min(m0 + i, p.M - 1u) * hk;
      if (kq < full) {
        let b = xb + kq * 4u;
        xs[i] = array<vec2f, 4>(x[b], x[b + 1u], x[b + 2u], x[b + 3u]);
      } else {
        // The last, partial quad: its padding weights are zero, but x past K must not be read (0 * inf is NaN).
        for (var j = 0u; j < 4u; j++) {
          let k = kq * 4u + j;
          xs[i][j] = select(x[xb + min(k, hk - 1u)], vec2f(0.0), k >= hk);
        }
      }
    }
    for (var b = 0u; b < RB; b++) {
      // Blocks past the last are read as the last one (in bounds) and not stored.
      let blk = min(g * RB + b, blocks - 1u);
      let fresh = kq == 0u || (blk * nq + kq) % Q_GROUP_QUADS == 0u;
      for (var r = 0u; r < W_GROUPS; r++) {
        let q = ((blk * nq + kq) * W_GROUPS + r) * W_LANES + lane;
        if (fresh) { d[b * W_GROUPS + r] = w_scale(q); }
        let wq = load_w8_scaled(q, d[b * W_GROUPS + r]);
        for (var i = 0u; i < TM; i++) {
          var a = acc[i][b * W_GROUPS + r];
          for (var j = 0u; j < 4u; j++) { a = fma(xs[i][j].y, wq[j].y, fma(xs[i][j].x, wq[j].x, a)); }
          acc[i][b * W_GROUPS + r] = a;
        }
      }
    }
  }
  for (var b = 0u; b < RB; b++) {
    for (var r = 0u; r < W_GROUPS; r++) {
      let n = (g * RB + b) * W_BLOCK + r * W_LANES + lane;
      if (n >= p.rows) { continue; }
      var bn = 0.0;
#if HAS_BIAS
      bn = bias[p.n0 + n];
#endif
      for (var i = 0u; i < TM; i++) {
        let m = m0 + i;
        if (m >= p.M) { break; }
        let out = m * p.N + p.n0 + n;
        var v = acc[i][b * W_GROUPS + r] + bn;
        if (ACCUMULATE) { v += y[out]; }
        y[out] = v;
      }
    }
  }
}
