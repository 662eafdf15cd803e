// SwiGLU activation of the Qwen2 MLP, in place: gate[i] = silu(gate[i]) * up[i],
// silu(g) = g / (1 + exp(-g)).
// Bindings: p, gate: f32 [n] (read and written), up: f32 [n]. One invocation per element.
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let g = gate[i];
  gate[i] = g / (1.0 + exp(-g)) * up[i];
}
