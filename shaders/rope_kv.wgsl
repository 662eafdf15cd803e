// Rotary position embedding (HF's rotate_half convention) fused with the split of the stacked q/k/v projection and
// the KV-cache write. Token t sits at position pos = tokens[t].x of sequence slot tokens[t].y; its row of qkv holds
// n_heads query heads, then n_kv key heads, then n_kv value heads, each of D elements. For i < D/2, with
// (c, s) = rope[pos, i]:
//   out[i] = v[i] * c - v[i + D/2] * s;   out[i + D/2] = v[i + D/2] * c + v[i] * s.
// Query heads are rotated into q; key heads are rotated into the cache row of (slot, pos); value heads are copied
// into the same row of v_cache. Cache layout: [slot * slot_len + position, kv_head, D].
// rope holds (cos, sin) pairs [max_positions, D/2], computed on the host in float64 from the same
// float32 angles as the reference (GPU cos/sin lose accuracy at large angles).
// Bindings: p, tokens: (position, slot) per token, qkv [T, (n_heads + 2 n_kv) D], rope, q [T, n_heads, D], k_cache,
// v_cache. One invocation per (i < D/2, head among n_heads + n_kv, token): grid (D/2 / WG, n_heads + n_kv, T).
struct Params { T: u32, n_heads: u32, n_kv: u32, D: u32, slot_len: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<vec2u>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2f>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let half_d = p.D / 2u;
  let i = gid.x;
  let head = gid.y;
  let t = gid.z;
  if (i >= half_d || t >= p.T) { return; }
  let pos = tokens[t].x;
  let cs = rope[pos * half_d + i];
  let row = t * (p.n_heads + 2u * p.n_kv) * p.D;
  if (head < p.n_heads) {
    let src = row + head * p.D + i;
    let a = qkv[src];
    let b = qkv[src + half_d];
    let at = (t * p.n_heads + head) * p.D + i;
    q[at] = a * cs.x - b * cs.y;
    q[at + half_d] = b * cs.x + a * cs.y;
    return;
  }
  let kv = head - p.n_heads;
  let k_src = row + (p.n_heads + kv) * p.D + i;
  let v_src = row + (p.n_heads + p.n_kv + kv) * p.D + i;
  let dst = ((tokens[t].y * p.slot_len + pos) * p.n_kv + kv) * p.D + i;
  let a = qkv[k_src];
  let b = qkv[k_src + half_d];
  k_cache[dst] = a * cs.x - b * cs.y;
  k_cache[dst + half_d] = b * cs.x + a * cs.y;
  v_cache[dst] = qkv[v_src];
  v_cache[dst + half_d] = qkv[v_src + half_d];
}
