// Linear layer at decode, split-K: y[m, n0 + n] (+)= sum_k x[m, k] * W[n, k] + bias[n0 + n], for m < M, n < rows,
// W [rows, K] in the layout of lib/weight_layout.wgsl (one part of a weight split across buffers, with its n0), the
// same contract as linear.wgsl. Two variants come from this file: the K-slices' partial sums meet in workgroup
// memory, or first across the subgroup by shuffles (SUBGROUPS) and only then across subgroups in workgroup memory.
// SWIGLU fuses the MLP's activation into its stacked gate/up projection (W = [gate; up]: 2 * rows weight rows in
// one part, no bias, no accumulation): y[m, n] = silu(gate[m, n]) * up[m, n] for n < rows, N = rows, so that the
// projection's own 2 * rows outputs are never written or read back. Of a workgroup's RG groups, the first RG / 2
// are gate rows and the others the up rows `rows` further on, so each output's two sums meet in its reduction.
// ARGMAX fuses the first half of the greedy choice into the LM head (no bias, no accumulation): instead of its
// logits, each workgroup writes, per input row, the largest of its RG * W_LANES logits and that logit's row (the
// first of equal ones; NaN never wins), as the pair y[2 s], y[2 s + 1] (the row as an f32, exact below 2^24; -1 and
// -3.4e38 when no logit is finite) at s = m * ceil(N / (RG * W_LANES)) + (n0 + first row) / (RG * W_LANES); the
// argmax kernel's PARTIALS mode then reduces them. Parts must start at multiples of RG * W_LANES rows.
// Bindings: p, x: f32 [M, K] as vec2 pairs, w: laid-out weight quads, bias: f32 [N] (HAS_BIAS), y: f32 [M, N].
// Constants: TM input rows and RG groups of W_LANES weight rows per workgroup; WG = W_LANES * KT invocations.
// Work per invocation: invocation t is one lane of one K-slice ks (t = ks % KL + KL * (lane + W_LANES * (ks / KL)));
// it owns weight row `lane` of each of the workgroup's RG groups and the K-quads kq = ks, ks + KT, ... (8 elements
// each) of those rows, for all TM input rows: RG * TM partial dot products over nq / KT quads.
// Grid: one workgroup per (RG * W_LANES rows, TM input rows; SWIGLU: RG / 2 * W_LANES outputs), numbered along x
// then y (x at most 65535), so a part of any number of rows, and any M (TM rows at a time), fits the grid.
//
// Why this mapping suits GPUs: a decode step has one (or a few) input rows, so the linear layer only streams the
// weights once, and what bounds it is how many loads are in flight. Giving the K of each row to KT invocations
// makes rows * KT / RG invocations instead of rows / 4 (a 1536-row projection: 48 workgroups of 256 at TM = 1
// rather than 6 of 64), each with a short run over K and RG independent loads per step. In memory, one K-quad of
// a group is W_LANES neighbouring 16-byte quads (32-byte for F32), so at every load the 8 lanes of a K-slice
// read 128 contiguous bytes, and the KT slices of a step read consecutive quads: the workgroup sweeps one
// contiguous stretch of the weights per step. Which invocation of a warp reads which quad does not matter to
// the memory system, so KL K-slices sit below the lane in t: a warp of 32 holds 4 K-slices x 8 lanes either way,
// and a subgroup of any size (4 and 8 too) holds several K-slices to add by shuffles. x is read from memory
// directly: the lanes of a K-slice read the same address (a broadcast from the cache), and the whole of x
// (TM * K floats) is far smaller than the weights.
#if SUBGROUPS
enable subgroups;
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

const KT: u32 = WG / W_LANES;
#if SWIGLU
// Groups of outputs per workgroup: each has a gate group and an up group.
const OG: u32 = RG / 2u;
#else
const OG: u32 = RG;
#endif
// K-slices interleaved below the lane in the invocation index (see the header).
const KL: u32 = min(KT, 4u);
// Input rows whose partial sums go through workgroup memory together: at most 16 KiB of it (WebGPU's default
// limit, and little enough to leave room for several workgroups per core), so that TM and KT are free.
const MC: u32 = min(TM, 4096u / (WG * RG));
// Outputs reduced per round: MC input rows x RG * W_LANES weight rows.
const OUT: u32 = MC * RG * W_LANES;
// One set of OUT partial sums per K-slice (the most sets there can be).
var<workgroup> red: array<f32, KT * OUT>;
#if ARGMAX
// The round's logits, in the order of red's sums.
var<workgroup> logit: array<f32, OUT>;
#endif

alias Acc = array<array<f32, RG>, TM>;

// Adds to acc the products of K-quad kq of the invocation's RG rows (q[g]: the quad's index in row g) with TM input
// rows from m0. `last`: kq is the last quad and K ends inside it; its padding weights are zero, but x past K
// must not be read (it is the next row, or memory never written, and 0 * inf is NaN). The two callers pass a
// constant, so the main loop carries no guard.
fn add_quad(acc: ptr<function, Acc>, q: array<u32, RG>, kq: u32, m0: u32, last: bool) {
  let hk = p.K / 2u;
  var wq: array<array<vec2f, 4>, RG>;
  for (var g = 0u; g < RG; g++) { wq[g] = load_w8(q[g]); }
  for (var i = 0u; i < TM; i++) {
    // Rows past M read the last valid row; their results are not stored.
    let xb = min(m0 + i, p.M - 1u) * hk;
    for (var j = 0u; j < 4u; j++) {
      let k = kq * 4u + j;
      var xv: vec2f;
      if (last) { xv = select(x[xb + min(k, hk - 1u)], vec2f(0.0), k >= hk); } else { xv = x[xb + k]; }
      for (var g = 0u; g < RG; g++) { (*acc)[i][g] += dot(xv, wq[g][j]); }
    }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
#if SUBGROUPS
        @builtin(subgroup_size) sg_size: u32,
#endif
) {
  // The workgroup's rows and input rows come from workgroup_id only, so they are uniform: the early return keeps
  // the barriers below in uniform control flow, and x's row addresses are the same in every invocation.
  let row_wgs = (p.rows + OG * W_LANES - 1u) / (OG * W_LANES);
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= row_wgs * ((p.M + TM - 1u) / TM)) { return; }
  let g0 = (idx % row_wgs) * OG;
  let m0 = (idx / row_wgs) * TM;
  let lane = (t / KL) % W_LANES;
  let ks = t % KL + (t / (KL * W_LANES)) * KL;

  let hk = p.K / 2u;
  let nq = (hk + 3u) / 4u;
  let full = hk / 4u;
  // Quad 0 of each of the invocation's rows; quad kq of a row is kq * W_BLOCK further on.
  var q: array<u32, RG>;
  for (var g = 0u; g < RG; g++) {
#if SWIGLU
    // Up rows are `rows` after their gate rows, rarely in the same block; rows past the gate's read its last row.
    let row = min((g0 + g % OG) * W_LANES + lane, p.rows - 1u) + select(0u, p.rows, g >= OG);
#else
    let row = (g0 + g) * W_LANES + lane;
#endif
    q[g] = w_quad(row, 0u, nq);
  }
  var acc: Acc;
  for (var kq = ks; kq < full; kq += KT) {
    var qk: array<u32, RG>;
    for (var g = 0u; g < RG; g++) { qk[g] = q[g] + kq * W_BLOCK; }
    add_quad(&acc, qk, kq, m0, false);
  }
  if (full < nq && ks == full % KT) {
    var qk: array<u32, RG>;
    for (var g = 0u; g < RG; g++) { qk[g] = q[g] + full * W_BLOCK; }
    add_quad(&acc, qk, full, m0, true);
  }

  // The K-slices ks with ks % stride == 0 hold the sums over stride K-slices (theirs and the next stride - 1):
  // without subgroups, their own.
  var stride = 1u;
#if SUBGROUPS
  // A butterfly over the K-slices inside each subgroup: bit `bit` of ks is bit `o` of t, and xor with it keeps
  // the lane. The bits of ks are visited upwards, and so are their bits in t, so the steps inside the subgroup
  // are the lowest bits of ks, and afterwards every invocation holds the sum over the K-slices that differ from
  // its own in those bits. Correct for any subgroup size (4 to 128): steps at or past the subgroup (or the
  // workgroup, when the subgroup is larger) shuffle with the invocation itself and add nothing, so the loop bound
  // stays a constant and every shuffle is in uniform control flow. It takes subgroups to be aligned runs of
  // local_invocation_index, as they are on the Vulkan, Metal and D3D12 drivers for one-dimensional workgroups.
  let span = min(sg_size, WG);
  for (var bit = 1u; bit < KT; bit <<= 1u) {
    let o = select(bit * W_LANES, bit, bit < KL);
    let inside = o < span;
    let mask = select(0u, o, inside);
    for (var i = 0u; i < TM; i++) {
      for (var g = 0u; g < RG; g++) {
        acc[i][g] += select(0.0, subgroupShuffleXor(acc[i][g], mask), inside);
      }
    }
    stride = select(stride, stride * 2u, inside);
  }
#endif
  let sets = KT / stride;

  for (var c = 0u; c < TM; c += MC) {
    if (ks % stride == 0u) {
      let at = (ks / stride) * OUT + lane;
      for (var i = 0u; i < MC; i++) {
        for (var g = 0u; g < RG; g++) { red[at + (i * RG + g) * W_LANES] = acc[c + i][g]; }
      }
    }
    workgroupBarrier();
    // Sum o of the round: input row m0 + c + o / (RG * W_LANES), of the workgroup's group o / W_LANES % RG, lane
    // o % W_LANES; neighbouring invocations read neighbouring words.
    for (var o = t; o < OUT; o += WG) {
      let g = (o / W_LANES) % RG;
      let n = (g0 + g) * W_LANES + o % W_LANES;
      let m = m0 + c + o / (RG * W_LANES);
#if ARGMAX
      // Rows past the part or past M take no part in the largest.
      var v = -3.4e38;
      if (n < p.rows && m < p.M) {
        v = 0.0;
        for (var s = 0u; s < sets; s++) { v += red[s * OUT + o]; }
      }
      logit[o] = v;
#else
#if SWIGLU
      // The gate's sums write the outputs, each with the up sum OG groups on.
      if (g >= OG || n >= p.rows || m >= p.M) { continue; }
      var gate = 0.0;
      var up = 0.0;
      for (var s = 0u; s < sets; s++) {
        gate += red[s * OUT + o];
        up += red[s * OUT + o + OG * W_LANES];
      }
      y[m * p.N + n] = gate / (1.0 + exp(-gate)) * up;
#else
      if (n >= p.rows || m >= p.M) { continue; }
      var v = 0.0;
      for (var s = 0u; s < sets; s++) { v += red[s * OUT + o]; }
#if HAS_BIAS
      v += bias[p.n0 + n];
#endif
      let out = m * p.N + p.n0 + n;
      if (ACCUMULATE) { v += y[out]; }
      y[out] = v;
#endif
#endif
    }
#if ARGMAX
    workgroupBarrier();
    // Invocation i < MC scans input row m0 + c + i's logits in row order, so that the first of equal ones wins.
    let mi = m0 + c + t;
    if (t < MC && mi < p.M) {
      var best = -3.4e38;
      var at = -1.0;
      for (var o = 0u; o < RG * W_LANES; o++) {
        let v = logit[t * RG * W_LANES + o];
        if (v > best) {
          best = v;
          at = f32(p.n0 + (g0 + o / W_LANES) * W_LANES + o % W_LANES);
        }
      }
      let s = mi * ((p.N + RG * W_LANES - 1u) / (RG * W_LANES)) + (p.n0 + g0 * W_LANES) / (RG * W_LANES);
      y[2u * s] = best;
      y[2u * s + 1u] = at;
    }
#endif
    // The next round overwrites red.
    if (c + MC < TM) { workgroupBarrier(); }
  }
}
