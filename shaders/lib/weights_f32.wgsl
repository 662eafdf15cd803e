// Weight access for F32 matrices (see weights_bf16.wgsl): a pair is two whole words, a quad two vec4s.
fn load_w2(pair: u32) -> vec2f {
  let v = w[pair / 2u];
  return bitcast<vec2f>(select(v.xy, v.zw, pair % 2u == 1u));
}

fn load_w8(quad: u32) -> array<vec2f, 4> {
  let a = w[2u * quad];
  let b = w[2u * quad + 1u];
  return array<vec2f, 4>(bitcast<vec2f>(a.xy), bitcast<vec2f>(a.zw), bitcast<vec2f>(b.xy), bitcast<vec2f>(b.zw));
}
