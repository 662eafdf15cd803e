// Greedy choice on the GPU: out[r] = the index of the largest of logits[r, 0..n), lowest index on
// ties (as torch.argmax), for every logits row r; the host reads back only these 4 bytes per row.
// Bindings: p, logits: f32 [rows, n], out: u32 [rows]. One workgroup per row: each invocation scans
// a strided slice, then a tree reduction.
// PARTIALS: logits holds, per row, n pairs (largest logit, its index as an f32) from the LM head's fused
// first half (linear_splitk.wgsl with ARGMAX), in index order; the same reduction over the pairs.
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  var bv = -3.4e38;
  var bi = 0xffffffffu;
#if PARTIALS
  let base = wid.x * p.n * 2u;
  for (var i = tid; i < p.n; i += WG) {
    let v = logits[base + 2u * i];
    // A pair without a finite logit holds -3.4e38, which never wins, so its index of -1 is never converted.
    if (v > bv) { bv = v; bi = u32(logits[base + 2u * i + 1u]); }
  }
#else
  let base = wid.x * p.n;
  for (var i = tid; i < p.n; i += WG) {
    let v = logits[base + i];
    if (v > bv) { bv = v; bi = i; }
  }
#endif
  best_v[tid] = bv;
  best_i[tid] = bi;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      let ov = best_v[tid + stride];
      let oi = best_i[tid + stride];
      if (ov > best_v[tid] || (ov == best_v[tid] && oi < best_i[tid])) {
        best_v[tid] = ov;
        best_i[tid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (tid == 0u) { out[wid.x] = best_i[0]; }
}
