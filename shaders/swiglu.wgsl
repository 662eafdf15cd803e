// SwiGLU activation of the Qwen2 MLP over the stacked gate/up projection: for each token row of gate_up (the
// gate's `width` outputs, then the up projection's), out[t, i] = silu(gate[t, i]) * up[t, i],
// silu(g) = g / (1 + exp(-g)).
// Bindings: p, gate_up: f32 [T, 2 width], out: f32 [T, width]. One invocation per output element (n = T width).
struct Params { n: u32, width: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate_up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let t = i / p.width;
  let g = gate_up[i + t * p.width];
  out[i] = g / (1.0 + exp(-g)) * gate_up[i + (t + 1u) * p.width];
}
