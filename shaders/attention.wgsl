// Grouped-query causal attention against the KV cache, for prefill (T queries) and decode (T = 1), and for
// several sequences at once: query t sits at position tokens[t].x of slot tokens[t].y and attends to that slot's
// cache positions 0..tokens[t].x; query head h reads KV head h / (n_heads / n_kv). Softmax is computed online (running max and sum, rescaled per
// block), so it is exact for any context length without materialising the scores.
// Bindings: p, tokens: (position, slot) per token, q [T, n_heads, D] (already rotated), k_cache and v_cache
// [slot * slot_len + position, n_kv, D], out [T, n_heads, D].
// One workgroup of WG invocations per (token, head). Per block of WG keys, each invocation scores
// one key; then each invocation owns output dims d = tid, tid + WG, ... (D <= WG * MAX_DPT) and
// accumulates the block's weighted values for them.
struct Params { T: u32, n_heads: u32, n_kv: u32, D: u32, slot_len: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<vec2u>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const MAX_D: u32 = WG * MAX_DPT;
const NEG_BIG: f32 = -3.0e38;
var<workgroup> q_s: array<f32, MAX_D>;
var<workgroup> p_s: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let t = wid.x;
  let h = wid.y;
  let kvh = h / (p.n_heads / p.n_kv);
  let kv_stride = p.n_kv * p.D;
  let qbase = (t * p.n_heads + h) * p.D;
  for (var d = tid; d < p.D; d += WG) { q_s[d] = q[qbase + d] * p.scale; }
  workgroupBarrier();

  let n_keys = tokens[t].x + 1u;
  let row0 = tokens[t].y * p.slot_len;
  var m = NEG_BIG;
  var l = 0.0;
  var acc: array<f32, MAX_DPT>;
  for (var j0 = 0u; j0 < n_keys; j0 += WG) {
    let nb = min(WG, n_keys - j0);
    var s = NEG_BIG;
    if (tid < nb) {
      let kb = (row0 + j0 + tid) * kv_stride + kvh * p.D;
      s = 0.0;
      for (var d = 0u; d < p.D; d++) { s += q_s[d] * k_cache[kb + d]; }
    }
    p_s[tid] = s;
    workgroupBarrier();
    var block_max = NEG_BIG;
    for (var i = 0u; i < nb; i++) { block_max = max(block_max, p_s[i]); }
    let m_new = max(m, block_max);
    let correction = exp(m - m_new);
    workgroupBarrier();
    p_s[tid] = select(0.0, exp(s - m_new), tid < nb);
    workgroupBarrier();
    var block_sum = 0.0;
    for (var i = 0u; i < nb; i++) { block_sum += p_s[i]; }
    l = l * correction + block_sum;
    for (var c = 0u; c < MAX_DPT; c++) {
      let d = tid + c * WG;
      if (d >= p.D) { break; }
      var a = acc[c] * correction;
      let vb = (row0 + j0) * kv_stride + kvh * p.D + d;
      for (var i = 0u; i < nb; i++) { a += p_s[i] * v_cache[vb + i * kv_stride]; }
      acc[c] = a;
    }
    m = m_new;
    workgroupBarrier();
  }
  for (var c = 0u; c < MAX_DPT; c++) {
    let d = tid + c * WG;
    if (d >= p.D) { break; }
    out[qbase + d] = acc[c] / l;
  }
}
