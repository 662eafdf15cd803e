// Tiled grouped-query causal attention for prefill: a workgroup serves a query tile of p.bq consecutive tokens of
// the step times the gw query heads that share one KV head (rows r = qi * gw + g, at most ROWS), and walks the keys
// in tiles of BK staged in workgroup memory, where every row of the tile reads them. Token t (position tokens[t].x
// of slot tokens[t].y) attends to its slot's positions 0..tokens[t].x, with an online softmax per row (running max
// and sum, rescaled per key tile), exact for any context length.
//
// Sequence boundaries: a step may pack several sequences (each a run of consecutive rows in its own slot), so a
// query tile may straddle two or more. The workgroup walks the tile's runs of one slot in turn; during a run only
// its rows take weights (the others get weight 0 and rescale 1, which leaves them exactly as they are), so each row
// sees its own slot's keys only, and a tile inside one sequence (the usual case) is a single run.
//
// Why it suits GPUs: each K and V element is read from memory once per workgroup and then used by all bq * gw rows
// from workgroup memory (today's kernel reads it once per (token, query head)); loads are coalesced (neighbouring
// invocations read neighbouring dims of a cache row); and there are 4 barriers per BK keys for all rows at once
// (today's kernel has 4 per 64 keys for each (token, query head)).
//
// Bindings: p; tokens: (position, slot) per token; q [T, n_heads, D] (rotated); k_cache and v_cache
// [slot * slot_len + position, n_kv, D]; out [T, n_heads, D].
// Grid (ceil(T / bq), n_kv * subgroups): a KV head's G = n_heads / n_kv query heads are served by
// subgroups = ceil(G / gw) workgroups. Per key tile: the K tile is staged; invocation tid scores key tid % BK
// against rows tid / BK + i * (WG / BK) (SPT rows, one K value loaded per SPT products); after a barrier, the V
// tile is staged while invocation r < ROWS turns row r's scores into weights; after another, each invocation owns
// output dims d = tid + c * WG (c < DPT) of every row and adds the tile's weighted V rows.
// Workgroup memory (floats): q and the K or V tile at a row stride of D + 1 (odd: rows of one dim index fall in
// different banks), ROWS * (MAX_D + 1) + BK * (MAX_D + 1) + ROWS * BK + 2 * ROWS; within 32 KiB for each member.
struct Params { T: u32, n_heads: u32, n_kv: u32, D: u32, slot_len: u32, scale: f32, gw: u32, bq: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<vec2u>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const DPT: u32 = MAX_D / WG;
const SPT: u32 = ROWS * BK / WG;
const NEG_BIG: f32 = -3.0e38;
// The tile's queries, pre-scaled by 1/sqrt(D): [r, D + 1].
var<workgroup> q_s: array<f32, ROWS * (MAX_D + 1u)>;
// The key tile's K, then its V: [j, D + 1].
var<workgroup> kv_s: array<f32, BK * (MAX_D + 1u)>;
// [r, j]: the tile's scores, then its weights.
var<workgroup> w_s: array<f32, ROWS * BK>;
// Per row: the key tile's rescale factor exp(m_old - m_new); at the end, the row's sum.
var<workgroup> c_s: array<f32, ROWS>;
var<workgroup> l_s: array<f32, ROWS>;

// Stages keys j0 .. j0 + nb - 1 of KV head kvh (of the V cache if `values`, else the K cache) from cache row row0
// into kv_s, zeros past nb.
fn stage(values: bool, row0: u32, j0: u32, nb: u32, kvh: u32, tid: u32) {
  let ks = p.D + 1u;
  for (var e = tid; e < BK * p.D; e += WG) {
    let j = e / p.D;
    let d = e % p.D;
    var x = 0.0;
    if (j < nb) {
      let at = ((row0 + j0 + j) * p.n_kv + kvh) * p.D + d;
      if (values) { x = v_cache[at]; } else { x = k_cache[at]; }
    }
    kv_s[j * ks + d] = x;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let G = p.n_heads / p.n_kv;
  let subgroups = (G + p.gw - 1u) / p.gw;
  let kvh = wid.y / subgroups;
  let g0 = (wid.y % subgroups) * p.gw;
  let gw = min(p.gw, G - g0);
  let h0 = kvh * G + g0;
  let t0 = wid.x * p.bq;
  let t_end = min(t0 + p.bq, p.T);
  let rows = p.bq * p.gw;
  let ks = p.D + 1u;

  // Row r is token t0 + r / gw and head h0 + r % gw; rows past the tile's tokens or heads stay zero and idle.
  for (var e = tid; e < rows * p.D; e += WG) {
    let r = e / p.D;
    let d = e % p.D;
    let t = t0 + r / p.gw;
    let g = r % p.gw;
    var x = 0.0;
    if (t < t_end && g < gw) { x = q[(t * p.n_heads + h0 + g) * p.D + d] * p.scale; }
    q_s[r * ks + d] = x;
  }
  // Invocation r < ROWS keeps row r's running max and sum.
  let my_t = t0 + tid / p.gw;
  let my_row = tid < rows && my_t < t_end && tid % p.gw < gw;
  var m = NEG_BIG;
  var l = 0.0;
  var acc: array<array<f32, DPT>, ROWS>;

  var seg_lo = t0;
  while (seg_lo < t_end) {
    // The run of rows of one slot starting at seg_lo, and the keys its latest position needs.
    let slot = tokens[seg_lo].y;
    var seg_hi = seg_lo + 1u;
    var n_keys = tokens[seg_lo].x + 1u;
    while (seg_hi < t_end && tokens[seg_hi].y == slot) {
      n_keys = max(n_keys, tokens[seg_hi].x + 1u);
      seg_hi++;
    }
    let live = my_row && my_t >= seg_lo && my_t < seg_hi;
    var my_pos = 0u;
    if (live) { my_pos = tokens[my_t].x; }
    let row0 = slot * p.slot_len;
    for (var j0 = 0u; j0 < n_keys; j0 += BK) {
      let nb = min(BK, n_keys - j0);
      stage(false, row0, j0, nb, kvh, tid);
      workgroupBarrier();
      let j = tid % BK;
      // Zeroed explicitly: left to the implicit zero value, a declaration inside the loop kept the previous tile's
      // scores on Dawn + lavapipe.
      var s = array<f32, SPT>();
      for (var d = 0u; d < p.D; d++) {
        let kd = kv_s[j * ks + d];
        for (var i = 0u; i < SPT; i++) { s[i] += q_s[(tid / BK + i * (WG / BK)) * ks + d] * kd; }
      }
      for (var i = 0u; i < SPT; i++) { w_s[(tid / BK + i * (WG / BK)) * BK + j] = s[i]; }
      workgroupBarrier();
      stage(true, row0, j0, nb, kvh, tid);
      if (tid < ROWS) {
        // The row sees keys j0 .. min(j0 + nb, pos + 1) - 1 of the tile (the causal mask); a row outside the run sees
        // none and stays exactly as it is (rescale 1, weights 0).
        let seen = select(0u, min(nb, my_pos + 1u - min(my_pos + 1u, j0)), live);
        var tile_max = NEG_BIG;
        for (var i = 0u; i < seen; i++) { tile_max = max(tile_max, w_s[tid * BK + i]); }
        let m_new = max(m, tile_max);
        let c = exp(m - m_new);
        var sum = 0.0;
        for (var i = 0u; i < BK; i++) {
          let w = select(0.0, exp(w_s[tid * BK + i] - m_new), i < seen);
          w_s[tid * BK + i] = w;
          sum += w;
        }
        l = l * c + sum;
        m = m_new;
        c_s[tid] = c;
      }
      workgroupBarrier();
      for (var c = 0u; c < DPT; c++) {
        let d = tid + c * WG;
        if (d >= p.D) { break; }
        for (var r = 0u; r < ROWS; r++) {
          if (r >= rows) { break; }
          acc[r][c] *= c_s[r];
        }
        for (var i = 0u; i < nb; i++) {
          let v = kv_s[i * ks + d];
          for (var r = 0u; r < ROWS; r++) {
            if (r >= rows) { break; }
            acc[r][c] += w_s[r * BK + i] * v;
          }
        }
      }
      // The next tile overwrites kv_s, w_s and c_s.
      workgroupBarrier();
    }
    seg_lo = seg_hi;
  }

  if (tid < ROWS) { l_s[tid] = l; }
  workgroupBarrier();
  for (var r = 0u; r < ROWS; r++) {
    if (r >= rows) { break; }
    let t = t0 + r / p.gw;
    let g = r % p.gw;
    if (t >= t_end || g >= gw) { continue; }
    for (var c = 0u; c < DPT; c++) {
      let d = tid + c * WG;
      if (d >= p.D) { break; }
      out[(t * p.n_heads + h0 + g) * p.D + d] = acc[r][c] / l_s[r];
    }
  }
}
