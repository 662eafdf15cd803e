// Weight access for BF16 matrices, prepended by the host to every kernel that reads weights (with
// weight_layout.wgsl). The matrix is bound as array<vec4u>: each u32 holds two consecutive bf16
// values, the lower element in the low half (safetensors are little-endian). A bf16 is the top half
// of an f32, so unpacking is two shifts, with no rounding.
fn unpack_w(word: u32) -> vec2f {
  return vec2f(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}

fn load_w2(pair: u32) -> vec2f {
  return unpack_w(w[pair / 4u][pair % 4u]);
}

fn load_w8(quad: u32) -> array<vec2f, 4> {
  let v = w[quad];
  return array<vec2f, 4>(unpack_w(v.x), unpack_w(v.y), unpack_w(v.z), unpack_w(v.w));
}
