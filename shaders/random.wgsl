// Seeded random weights, generated where they live: benchmarks at real model shapes without a file
// or a host copy. Values are uniform in [center - scale, center + scale].
// F32 = false: out holds packed bf16 pairs (the same layout as a loaded BF16 matrix); true: f32 values.
// Bindings: p (uniform), out: array<u32>, written at [dst, dst + words). One invocation per output word; the word's
// index in its tensor (offset + i) seeds a hash, so a matrix split into parts, or stacked with others in one buffer,
// gets the same values as alone.
struct Params { words: u32, offset: u32, seed: u32, scale: f32, center: f32, dst: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

override F32: bool = false;

// PCG-style integer hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020).
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn rand_uniform(v: u32) -> f32 {
  return p.center + p.scale * (f32(pcg(v) >> 8u) / 8388608.0 - 1.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.words) { return; }
  let g = p.offset + i;
  if (F32) {
    out[p.dst + i] = bitcast<u32>(rand_uniform(g ^ p.seed));
    return;
  }
  let lo = bitcast<u32>(rand_uniform((2u * g) ^ p.seed)) >> 16u;
  let hi = bitcast<u32>(rand_uniform((2u * g + 1u) ^ p.seed)) & 0xffff0000u;
  out[p.dst + i] = hi | lo;
}
