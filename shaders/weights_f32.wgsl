// Weight access for F32 matrices (see weights_bf16.wgsl): a pair is two whole words.
fn load_w2(pair: u32) -> vec2f {
  return vec2f(bitcast<f32>(w[2u * pair]), bitcast<f32>(w[2u * pair + 1u]));
}
