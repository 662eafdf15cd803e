// The scaled weight access of weights_q8.wgsl and weights_q4.wgsl for float matrices, which have no scales:
// prepended by the host after weights_bf16, weights_f16 or weights_f32.wgsl, so that a kernel reading a quantized
// matrix's scale once per group (linear.wgsl) reads float ones unchanged.
fn w_scale(quad: u32) -> f32 {
  return 1.0;
}

fn load_w8_scaled(quad: u32, d: f32) -> array<vec2f, 4> {
  return load_w8(quad);
}
