// Linear layer, tiled for long steps (prefill): y[m, n0 + n] (+)= sum_k x[m, k] * W[n, k] + bias[n0 + n], for
// m < M, n < rows, W [rows, K] in the layout of lib/weight_layout.wgsl (one part of a split weight per dispatch).
// The same contract as linear.wgsl (bindings, uniforms, ACCUMULATE); see src/ops/linear-tiled.ts for the members.
//
// A workgroup computes an output tile of BM input rows x BN weight rows. It walks K in tiles of BK: every invocation
// helps to stage the x tile [BM, BK] and the W tile [BN, BK] in workgroup memory, then each invocation multiplies
// out its TM x TN outputs (register blocking: per 4 k, TM + TN vector loads from workgroup memory feed 4 TM TN
// multiply-adds). So each x and W value is read from memory once per tile instead of once per output row or column.
// Bindings: p, x: f32 [M, K] as vec2 pairs, w: laid-out weight quads, bias: f32 [N] (HAS_BIAS), y: f32 [M, N].
// Work per invocation: TM x TN outputs, rows m0 + ty + i * (BM / TM), columns c0 + tx + j * (BN / TN) (strided, so
// that neighbouring invocations read neighbouring tile rows and store neighbouring y columns). Grid: x over
// ceil(rows / BN) column tiles, y over ceil(M / BM) row tiles; WG = (BM / TM) * (BN / TN) invocations.
//
// F16 (a member's `defines`): tiles hold f16, products are f16 (x, W rounded to f16, then each product rounded),
// and the sums are f32: half the workgroup memory per value and packed f16 multiplies, at f16's precision (the
// stated bound is in test/gpu-helpers.ts). Values past f16's range (|x w| > 65504) overflow.
#if F16
enable f16;
alias V4 = vec4<f16>;
#else
alias V4 = vec4f;
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

// Tiles as vectors of 4 consecutive k. x: a row of BK / 4 vectors per input row, padded by one vector so that the
// two input rows a warp reads at once sit in different banks. W: k-major, BN vectors (one per weight row) for each
// 4 k, so that neighbouring invocations read (and the staging writes) neighbouring vectors.
const ROW = BK / 4u + 1u;
var<workgroup> xs: array<V4, BM * ROW>;
var<workgroup> ws: array<V4, BK / 4u * BN>;
// Invocations along the tile's columns (weight rows) and rows (input rows).
const TX = BN / TN;
const TY = BM / TM;

// acc + the dot product of a and b: four f32 multiply-adds, or (F16) four f16 products summed in f32.
fn mac(acc: f32, a: V4, b: V4) -> f32 {
#if F16
  let q = vec4f(a * b);
  return acc + ((q.x + q.y) + (q.z + q.w));
#else
  return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  // The grid has exactly the tiles (src/ops/linear-tiled.ts): no workgroup returns early, and the barriers below
  // are in uniform control flow (the K loop's bound is a uniform).
  let c0 = wid.x * BN;
  let m0 = wid.y * BM;
  let hk = p.K / 2u;
  let nq = (hk + 3u) / 4u;
  let tx = lid % TX;
  let ty = lid / TX;

  var acc: array<array<f32, TN>, TM>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // x tile: one vector (2 pairs) per step of the loop, along k first, so neighbouring invocations read
    // neighbouring pairs of a row. Rows past M read the last row (their results are not stored); pairs past K
    // are zero and their x is not used: it could be anything, and 0 * inf is NaN (the padding weights are 0).
    for (var e = lid; e < BM * (BK / 4u); e += WG) {
      let r = e / (BK / 4u);
      let kp = k0 / 2u + (e % (BK / 4u)) * 2u;
      let base = min(m0 + r, p.M - 1u) * hk;
      let lo = select(vec2f(0.0), x[base + min(kp, hk - 1u)], kp < hk);
      let hi = select(vec2f(0.0), x[base + min(kp + 1u, hk - 1u)], kp + 1u < hk);
      xs[r * ROW + e % (BK / 4u)] = V4(vec4f(lo, hi));
    }
    // W tile: one quad (8 k of one row) per step. In the layout the quads kq of a block's 32 rows are 32
    // consecutive quads, so neighbouring invocations read neighbouring quads (whole 128-byte segments).
    // Blocks past the part and quads past K are not in the buffer: zero.
    for (var e = lid; e < BN * (BK / 8u); e += WG) {
      let rr = e % W_BLOCK;
      let q = (e / W_BLOCK) % (BK / 8u);
      let b = e / (W_BLOCK * (BK / 8u));
      let blk = c0 / W_BLOCK + b;
      let kq = k0 / 8u + q;
      var v = array<vec2f, 4>();
      if (blk * W_BLOCK < p.rows && kq < nq) { v = load_w8(((blk * nq + kq) * W_GROUPS) * W_LANES + rr); }
      let at = q * 2u * BN + b * W_BLOCK + rr;
      ws[at] = V4(vec4f(v[0], v[1]));
      ws[at + BN] = V4(vec4f(v[2], v[3]));
    }
    workgroupBarrier();
    for (var kv = 0u; kv < BK / 4u; kv++) {
      var a: array<V4, TM>;
      var b: array<V4, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = xs[(ty + i * TY) * ROW + kv]; }
      for (var j = 0u; j < TN; j++) { b[j] = ws[kv * BN + tx + j * TX]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i][j] = mac(acc[i][j], a[i], b[j]); }
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < TN; j++) {
    let n = c0 + tx + j * TX;
    if (n >= p.rows) { break; }
    var bn = 0.0;
#if HAS_BIAS
    bn = bias[p.n0 + n];
#endif
    for (var i = 0u; i < TM; i++) {
      let m = m0 + ty + i * TY;
      if (m >= p.M) { break; }
      let out = m * p.N + p.n0 + n;
      var v = acc[i][j] + bn;
      if (ACCUMULATE) { v += y[out]; }
      y[out] = v;
    }
  }
}
