// Row gather: out[r, :] = x[rows[r], :] for r < S (rows of H floats). The LM head then reads its input rows at
// positions the compiler can see are the same in every invocation, which a row index read from memory hides.
// Bindings: p, x: f32 [T, H], rows: u32 [S], out: f32 [S, H]. One invocation per element: grid (H / WG, S).
struct Params { H: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  let r = gid.y;
  if (i >= p.H) { return; }
  out[r * p.H + i] = x[rows[r] * p.H + i];
}
