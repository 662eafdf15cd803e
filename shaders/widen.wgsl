// Widen a stored weight vector (norm weight or bias, any stored dtype) to f32 once at load time,
// so the per-token kernels read plain f32 vectors.
// Bindings: p (uniform), w: the stored vector, row-major (a buffer padded to 16 bytes), out: f32 [2 * pairs].
// One invocation per pair of elements.
struct Params { pairs: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4u>;
@group(0) @binding(2) var<storage, read_write> out: array<vec2f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.pairs) {
    out[i] = load_w2(i);
  }
}
