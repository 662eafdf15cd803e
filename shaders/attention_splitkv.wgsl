// Split-KV ("flash-decoding") grouped-query causal attention, first pass. Token t (position tokens[t].x of slot
// tokens[t].y) attends to its slot's cache positions 0..tokens[t].x; those keys are cut into chunks of p.chunk_len,
// and one workgroup per (chunk, group of query heads sharing a KV head, token) computes for each of its query heads
// the chunk's softmax partials: the largest score m, l = sum_j exp(s_j - m) and o[d] = sum_j exp(s_j - m) v_j[d].
// shaders/attention_splitkv_merge.wgsl combines a token's chunks by log-sum-exp. When the step has one chunk per
// token (p.n_chunks == 1) this pass writes the normalised output o / l itself and the merge is not dispatched.
//
// Why it suits GPUs: a decode step has few tokens and few KV heads (Qwen2.5: 2 to 8), so one workgroup per (token,
// query head) leaves most of a large GPU idle while each walks the whole context alone. Chunks spread the context
// over n_chunks times more workgroups, and one workgroup serving every query head of a KV head reads each K and V
// row once rather than once per query head (7x less cache traffic for Qwen2.5-0.5B's 14/2 heads).
//
// Bindings: p; tokens: (position, slot) per token; q [T, n_heads, D] (rotated; read as vec4s, D % 4 == 0);
// k_cache (vec4s) and v_cache [slot * slot_len + position, n_kv, D]; part_o [T, n_heads, n_chunks, D] and
// part_ml [T, n_heads, n_chunks] of (m, l): the partials; out [T, n_heads, D].
// Grid (n_chunks, n_kv * subgroups, T): a KV head's G = n_heads / n_kv query heads are served by
// subgroups = ceil(G / gw) workgroups of at most gw <= MAX_G heads each (one for every Qwen2.5 model).
// Work per workgroup: its chunk in blocks of WG keys. Per block, invocation j scores key j against the gw queries
// (its K row read once); invocation g < gw updates head g's running max; invocation j turns its scores into
// weights; then each invocation owns output dims d = tid, tid + WG, ... (D <= WG * MAX_DPT) of every head and adds
// the block's weighted V rows (each element read once, neighbouring invocations reading neighbouring dims).
struct Params { n_heads: u32, n_kv: u32, D: u32, slot_len: u32, scale: f32, gw: u32, n_chunks: u32, chunk_len: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<vec2u>;
@group(0) @binding(2) var<storage, read> q: array<vec4f>;
@group(0) @binding(3) var<storage, read> k_cache: array<vec4f>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(6) var<storage, read_write> part_ml: array<vec2f>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

const MAX_D4: u32 = WG * MAX_DPT / 4u;
const NEG_BIG: f32 = -3.0e38;
// The group's queries, pre-scaled by 1/sqrt(D): [g, D / 4].
var<workgroup> q_s: array<vec4f, MAX_G * MAX_D4>;
// [g, j]: the block's scores, then its weights; at the end each invocation's share of the sums l.
var<workgroup> w_s: array<f32, MAX_G * WG>;
// Per head: the running max, the block's rescale factor exp(m_old - m_new), the chunk's sum l.
var<workgroup> m_s: array<f32, MAX_G>;
var<workgroup> c_s: array<f32, MAX_G>;
var<workgroup> l_s: array<f32, MAX_G>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let t = wid.z;
  let n_keys = tokens[t].x + 1u;
  let j_lo = wid.x * p.chunk_len;
  // Chunk counts differ per token (the grid is sized by the step's longest context): the merge reads only this
  // token's own chunks, so a chunk past its keys has nothing to write.
  if (j_lo >= n_keys) { return; }
  let j_hi = min(j_lo + p.chunk_len, n_keys);

  let G = p.n_heads / p.n_kv;
  let subgroups = (G + p.gw - 1u) / p.gw;
  let kvh = wid.y / subgroups;
  let g0 = (wid.y % subgroups) * p.gw;
  let gw = min(p.gw, G - g0);
  let h0 = kvh * G + g0;
  let D4 = p.D / 4u;
  for (var i = tid; i < gw * D4; i += WG) {
    let g = i / D4;
    q_s[g * MAX_D4 + i % D4] = q[(t * p.n_heads + h0 + g) * D4 + i % D4] * p.scale;
  }
  if (tid < MAX_G) { m_s[tid] = NEG_BIG; }
  workgroupBarrier();

  let row0 = tokens[t].y * p.slot_len;
  let kv_stride = p.n_kv * p.D;
  var acc: array<array<f32, MAX_DPT>, MAX_G>;
  // This invocation's share of each head's sum l (its keys' weights), summed over the workgroup at the end.
  var l: array<f32, MAX_G>;
  for (var j0 = j_lo; j0 < j_hi; j0 += WG) {
    let nb = min(WG, j_hi - j0);
    if (tid < nb) {
      let kb = ((row0 + j0 + tid) * kv_stride + kvh * p.D) / 4u;
      // Zeroed explicitly: left to the implicit zero value, a declaration inside a loop kept the previous block's
      // scores on Dawn + lavapipe.
      var s = array<f32, MAX_G>();
      for (var d4 = 0u; d4 < D4; d4++) {
        let kv = k_cache[kb + d4];
        for (var g = 0u; g < MAX_G; g++) {
          if (g >= gw) { break; }
          s[g] += dot(q_s[g * MAX_D4 + d4], kv);
        }
      }
      for (var g = 0u; g < MAX_G; g++) {
        if (g >= gw) { break; }
        w_s[g * WG + tid] = s[g];
      }
    }
    workgroupBarrier();
    if (tid < gw) {
      var block_max = NEG_BIG;
      for (var i = 0u; i < nb; i++) { block_max = max(block_max, w_s[tid * WG + i]); }
      let m_new = max(m_s[tid], block_max);
      c_s[tid] = exp(m_s[tid] - m_new);
      m_s[tid] = m_new;
    }
    workgroupBarrier();
    for (var g = 0u; g < MAX_G; g++) {
      if (g >= gw) { break; }
      let w = select(0.0, exp(w_s[g * WG + tid] - m_s[g]), tid < nb);
      w_s[g * WG + tid] = w;
      l[g] = l[g] * c_s[g] + w;
    }
    workgroupBarrier();
    for (var c = 0u; c < MAX_DPT; c++) {
      let d = tid + c * WG;
      if (d >= p.D) { break; }
      for (var g = 0u; g < MAX_G; g++) {
        if (g >= gw) { break; }
        acc[g][c] *= c_s[g];
      }
      let vb = (row0 + j0) * kv_stride + kvh * p.D + d;
      for (var i = 0u; i < nb; i++) {
        let v = v_cache[vb + i * kv_stride];
        for (var g = 0u; g < MAX_G; g++) {
          if (g >= gw) { break; }
          acc[g][c] += w_s[g * WG + i] * v;
        }
      }
    }
    // The next block overwrites w_s, m_s and c_s.
    workgroupBarrier();
  }

  for (var g = 0u; g < MAX_G; g++) {
    if (g >= gw) { break; }
    w_s[g * WG + tid] = l[g];
  }
  workgroupBarrier();
  if (tid < gw) {
    var sum = 0.0;
    for (var i = 0u; i < WG; i++) { sum += w_s[tid * WG + i]; }
    l_s[tid] = sum;
  }
  workgroupBarrier();
  let direct = p.n_chunks == 1u;
  for (var g = 0u; g < MAX_G; g++) {
    if (g >= gw) { break; }
    let row = t * p.n_heads + h0 + g;
    for (var c = 0u; c < MAX_DPT; c++) {
      let d = tid + c * WG;
      if (d >= p.D) { break; }
      if (direct) {
        out[row * p.D + d] = acc[g][c] / l_s[g];
      } else {
        part_o[(row * p.n_chunks + wid.x) * p.D + d] = acc[g][c];
      }
    }
  }
  if (!direct && tid < gw) { part_ml[(t * p.n_heads + h0 + tid) * p.n_chunks + wid.x] = vec2f(m_s[tid], l_s[tid]); }
}
