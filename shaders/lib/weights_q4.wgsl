// Weight access for Q4 matrices (QUANT_LAYOUT in src/gpu/layout.ts), prepended by the host to every kernel that
// reads weights (with weight_layout.wgsl). Quad q of the blocked layout lies in tile q / Q_TILE_QUADS: the tile's
// quads come first, one word each (element e in bits 4e..4e+3, as n = q + 8 in 0..15), then W_BLOCK f16 scales, one
// per row slot q % W_BLOCK. Element e of quad q is (n - 8) times the scale. The scales are f16 normal numbers or zero
// (with every n = 8), so unpack2x16float is exact on any device.
const Q_TILE_QUADS: u32 = Q_GROUP_QUADS * W_BLOCK;
const Q_TILE_WORDS: u32 = Q_TILE_QUADS + W_BLOCK / 2u;

fn q4_scale(tile: u32, slot: u32) -> f32 {
  let word = tile * Q_TILE_WORDS + Q_TILE_QUADS + slot / 2u;
  let s = unpack2x16float(w[word / 4u][word % 4u]);
  return select(s.x, s.y, (slot & 1u) == 1u);
}

// Elements 4h..4h+3 of a quad's word, as n - 8.
fn q4_nibbles(word: u32, h: u32) -> vec4f {
  return vec4f((vec4u(word >> (16u * h)) >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u)) - vec4f(8.0);
}

fn q4_word(tile: u32, i: u32) -> u32 {
  let word = tile * Q_TILE_WORDS + i;
  return w[word / 4u][word % 4u];
}

// The scale of quad q, shared by the Q_GROUP_QUADS quads along K of its row in its tile (see weights_q8.wgsl).
fn w_scale(quad: u32) -> f32 {
  return q4_scale(quad / Q_TILE_QUADS, quad % W_BLOCK);
}

// Quad q's values with its scale d (w_scale(q)).
fn load_w8_scaled(quad: u32, d: f32) -> array<vec2f, 4> {
  let word = q4_word(quad / Q_TILE_QUADS, quad % Q_TILE_QUADS);
  let lo = q4_nibbles(word, 0u) * d;
  let hi = q4_nibbles(word, 1u) * d;
  return array<vec2f, 4>(lo.xy, lo.zw, hi.xy, hi.zw);
}

fn load_w8(quad: u32) -> array<vec2f, 4> {
  return load_w8_scaled(quad, w_scale(quad));
}

fn load_w2(pair: u32) -> vec2f {
  let quad = pair / 4u;
  let tile = quad / Q_TILE_QUADS;
  let i = quad % Q_TILE_QUADS;
  let n = (vec2u(q4_word(tile, i) >> (8u * (pair % 4u))) >> vec2u(0u, 4u)) & vec2u(15u);
  return (vec2f(n) - vec2f(8.0)) * q4_scale(tile, i % W_BLOCK);
}
