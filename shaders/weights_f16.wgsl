// Weight access for F16 matrices (see weights_bf16.wgsl). unpack2x16float is core WGSL, so this
// path does not need the shader-f16 feature.
fn load_w2(pair: u32) -> vec2f {
  return unpack2x16float(w[pair]);
}
