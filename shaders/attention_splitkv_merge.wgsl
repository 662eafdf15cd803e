// Split-KV attention, second pass: the chunk partials of shaders/attention_splitkv.wgsl combined by log-sum-exp.
// For token t with n = ceil((tokens[t].x + 1) / chunk_len) chunks and query head h, with M = max_c m_c and
// w_c = exp(m_c - M): out[d] = sum_c w_c o_c[d] / sum_c w_c l_c. The chunk holding the largest score has w_c = 1
// and l_c >= 1, so the denominator is at least 1.
// Bindings: p; tokens: (position, slot) per token; part_o [T, n_heads, n_chunks, D]; part_ml [T, n_heads, n_chunks]
// of (m, l); out [T, n_heads, D].
// One workgroup per (token, query head): every invocation finds M (n reads of the same values), invocations
// c < n compute w_c; then each invocation owns output dims d = tid, tid + WG, ... and sums its dims over chunks.
struct Params { n_heads: u32, D: u32, n_chunks: u32, chunk_len: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<vec2u>;
@group(0) @binding(2) var<storage, read> part_o: array<f32>;
@group(0) @binding(3) var<storage, read> part_ml: array<vec2f>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const NEG_BIG: f32 = -3.0e38;
var<workgroup> w_s: array<f32, MAX_CHUNKS>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let t = wid.x;
  let row = t * p.n_heads + wid.y;
  let n = (tokens[t].x + p.chunk_len) / p.chunk_len;
  let base = row * p.n_chunks;
  var m = NEG_BIG;
  for (var c = 0u; c < n; c++) { m = max(m, part_ml[base + c].x); }
  for (var c = tid; c < n; c += WG) { w_s[c] = exp(part_ml[base + c].x - m); }
  workgroupBarrier();
  var l = 0.0;
  for (var c = 0u; c < n; c++) { l += w_s[c] * part_ml[base + c].y; }
  for (var d = tid; d < p.D; d += WG) {
    var o = 0.0;
    for (var c = 0u; c < n; c++) { o += w_s[c] * part_o[(base + c) * p.D + d]; }
    out[row * p.D + d] = o / l;
  }
}
