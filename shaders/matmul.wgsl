// Prefill linear layer: y[m, n0 + n] (+)= sum_k x[m, k] * W[n, k] + bias[n0 + n],
// for m < M, n < rows, with W in HF's [out, in] layout (one weight part of `rows` output rows;
// a weight split across buffers is covered by one dispatch per part, each with its own n0).
// Bindings: p (uniform), x: f32 [M, K] viewed as vec2 pairs, w: packed weight pairs [rows, K/2],
// bias: f32 [N] (ignored unless HAS_BIAS), y: f32 [M, N].
// ACCUMULATE adds into y, which is how the residual stream is updated without a separate add.
// Each invocation computes a TM x TN block of y; a workgroup covers (8*TN) columns x (8*TM) rows.
struct Params { M: u32, K: u32, N: u32, n0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2f>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
const TM: u32 = 4u;
const TN: u32 = 4u;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n_first = gid.x * TN;
  let m_first = gid.y * TM;
  if (n_first >= p.rows || m_first >= p.M) { return; }
  let half_k = p.K / 2u;
  // Clamp out-of-range rows/columns onto valid ones so the inner loop has no branches;
  // their results are simply not stored.
  var xrow: array<u32, TM>;
  var wrow: array<u32, TN>;
  for (var i = 0u; i < TM; i++) { xrow[i] = min(m_first + i, p.M - 1u) * half_k; }
  for (var j = 0u; j < TN; j++) { wrow[j] = min(n_first + j, p.rows - 1u) * half_k; }

  var acc: array<array<f32, TN>, TM>;
  for (var kk = 0u; kk < half_k; kk++) {
    var wv: array<vec2f, TN>;
    for (var j = 0u; j < TN; j++) { wv[j] = load_w2(wrow[j] + kk); }
    for (var i = 0u; i < TM; i++) {
      let xv = x[xrow[i] + kk];
      for (var j = 0u; j < TN; j++) { acc[i][j] += dot(xv, wv[j]); }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = m_first + i;
    if (m >= p.M) { break; }
    for (var j = 0u; j < TN; j++) {
      let n = n_first + j;
      if (n >= p.rows) { break; }
      let out = m * p.N + p.n0 + n;
      var v = acc[i][j];
      if (HAS_BIAS) { v += bias[p.n0 + n]; }
      if (ACCUMULATE) { v += y[out]; }
      y[out] = v;
    }
  }
}
