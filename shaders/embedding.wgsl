// Embedding gather: x[t, :] = table[ids[t], :] for t < T.
// The table may be split by rows across several buffers (a tensor larger than the device's largest
// storage binding); each dispatch covers rows [row0, row0 + rows) and leaves other ids to the
// dispatches of the other parts.
// Bindings: p (uniform), ids: u32 [T], w: table part (layout of lib/weight_layout.wgsl), x: f32 [T, H].
// One invocation per pair of hidden elements of one token: grid (H/2 / WG, T).
struct Params { T: u32, half_h: u32, row0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> x: array<vec2f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  let t = gid.y;
  if (i >= p.half_h || t >= p.T) { return; }
  let id = ids[t];
  if (id < p.row0 || id - p.row0 >= p.rows) { return; }
  x[t * p.half_h + i] = load_w2(w_pair(id - p.row0, i, (p.half_h + 3u) / 4u));
}
