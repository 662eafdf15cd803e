// Weight access for F16 matrices (see weights_bf16.wgsl). unpack2x16float is core WGSL, so this
// path does not need the shader-f16 feature.
fn load_w2(pair: u32) -> vec2f {
  return unpack2x16float(w[pair / 4u][pair % 4u]);
}

fn load_w8(quad: u32) -> array<vec2f, 4> {
  let v = w[quad];
  return array<vec2f, 4>(unpack2x16float(v.x), unpack2x16float(v.y), unpack2x16float(v.z), unpack2x16float(v.w));
}
