// Weight access for BF16 matrices. Prepended by the host to every kernel that reads weights.
// The matrix is bound as array<u32>: each word holds two consecutive bf16 values, the lower
// element in the low half (safetensors are little-endian). A bf16 is the top half of an f32,
// so unpacking is two shifts, with no rounding.
fn load_w2(pair: u32) -> vec2f {
  let word = w[pair];
  return vec2f(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
