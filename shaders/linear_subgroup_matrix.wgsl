// UNTESTED: written from Dawn's documentation of chromium-experimental-subgroup-matrix (docs/dawn/features/
// subgroup_matrix.md, and the builtins' current form in Tint: the layout as a template argument) and never
// compiled nor run: neither lavapipe nor Deno's wgpu has the feature. Only its interface is checked (the build's
// kernel check). Run test/kernels-prefill-linear.test.ts on an adapter that lists subgroupMatrixConfigs first.
//
// Linear layer on the GPU's matrix units: y[m, n0 + n] (+)= sum_k x[m, k] * W[n, k] + bias[n0 + n], for m < M,
// n < rows, W [rows, K] in the layout of lib/weight_layout.wgsl; the contract of linear.wgsl (bindings, uniforms,
// ACCUMULATE). SM x SN x SK is one of the adapter's configs (src/ops/linear-subgroup-matrix.ts picks it): left
// (x) and right (W) matrices of T, f32 results.
// Bindings: p, x: f32 [M, K] as vec2 pairs, w: laid-out weight quads, bias: f32 [N] (HAS_BIAS), y: f32 [M, N].
// Work: a workgroup of WG invocations computes an output tile of BM input rows x BN weight rows, as FM x FN
// fragments of SM x SN; subgroup s takes fragments s, s + subgroups, ... K is walked in tiles of BK staged in
// workgroup memory by every invocation (x rounded to T; zero past K, past the part and past M). The results go
// through workgroup memory so that the edges of the tile, the bias and ACCUMULATE are applied per element.
// Grid: x over ceil(rows / BN), y over ceil(M / BM).
enable chromium_experimental_subgroup_matrix;
enable subgroups;
#if F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif
struct Params { M: u32, K: u32, N: u32, n0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2f>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override ACCUMULATE: bool = false;

const FM = BM / SM;
const FN = BN / SN;
// x tile row-major [BM][BK]: the left matrices, stride BK. W tile [BN][BK]: the right matrices (K x N) column-major,
// stride BK. Results row-major [BM][BN].
var<workgroup> xs: array<T, BM * BK>;
var<workgroup> ws: array<T, BN * BK>;
var<workgroup> out: array<f32, BM * BN>;

// The matrix builtins must run in subgroup-uniform control flow with subgroup-uniform operands; the fragment loops
// depend on subgroup_id, which is uniform per subgroup but not per workgroup, the scope the analysis checks.
@diagnostic(off, chromium_experimental.subgroup_matrix_uniformity)
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
  @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) subgroups: u32) {
  let c0 = wid.x * BN;
  let m0 = wid.y * BM;
  let hk = p.K / 2u;
  let nq = (hk + 3u) / 4u;

  var acc: array<subgroup_matrix_result<f32, SN, SM>, FM * FN>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // As in linear_tiled.wgsl: rows past M read the last row, x past K is zero and unused, absent W is zero.
    for (var e = lid; e < BM * (BK / 2u); e += WG) {
      let r = e / (BK / 2u);
      let kp = k0 / 2u + e % (BK / 2u);
      let v = select(vec2f(0.0), x[min(m0 + r, p.M - 1u) * hk + min(kp, hk - 1u)], kp < hk);
      xs[r * BK + (e % (BK / 2u)) * 2u] = T(v.x);
      xs[r * BK + (e % (BK / 2u)) * 2u + 1u] = T(v.y);
    }
    for (var e = lid; e < BN * (BK / 8u); e += WG) {
      let rr = e % W_BLOCK;
      let q = (e / W_BLOCK) % (BK / 8u);
      let b = e / (W_BLOCK * (BK / 8u));
      let blk = c0 / W_BLOCK + b;
      let kq = k0 / 8u + q;
      var v = array<vec2f, 4>();
      if (blk * W_BLOCK < p.rows && kq < nq) { v = load_w8(((blk * nq + kq) * W_GROUPS) * W_LANES + rr); }
      let at = (b * W_BLOCK + rr) * BK + q * 8u;
      for (var i = 0u; i < 4u; i++) {
        ws[at + 2u * i] = T(v[i].x);
        ws[at + 2u * i + 1u] = T(v[i].y);
      }
    }
    workgroupBarrier();
    for (var f = sg; f < FM * FN; f += subgroups) {
      let xo = (f / FN) * SM * BK;
      let wo = (f % FN) * SN * BK;
      for (var kk = 0u; kk < BK; kk += SK) {
        let a = subgroupMatrixLoad<subgroup_matrix_left<T, SK, SM>, row_major>(&xs, xo + kk, BK);
        let b = subgroupMatrixLoad<subgroup_matrix_right<T, SN, SK>, col_major>(&ws, wo + kk, BK);
        acc[f] = subgroupMatrixMultiplyAccumulate(a, b, acc[f]);
      }
    }
    workgroupBarrier();
  }
  for (var f = sg; f < FM * FN; f += subgroups) {
    subgroupMatrixStore<row_major>(&out, (f / FN) * SM * BN + (f % FN) * SN, acc[f], BN);
  }
  workgroupBarrier();

  for (var e = lid; e < BM * BN; e += WG) {
    let m = m0 + e / BN;
    let n = c0 + e % BN;
    if (m >= p.M || n >= p.rows) { continue; }
    var v = out[e];
#if HAS_BIAS
    v += bias[p.n0 + n];
#endif
    let at = m * p.N + p.n0 + n;
    if (ACCUMULATE) { v += y[at]; }
    y[at] = v;
  }
}
