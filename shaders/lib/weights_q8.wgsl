// Weight access for Q8 matrices (QUANT_LAYOUT in src/gpu/layout.ts), prepended by the host to every kernel that
// reads weights (with weight_layout.wgsl). Quad q of the blocked layout lies in tile q / Q_TILE_QUADS: the tile's
// quads come first, 8 int8 each (two words, element e in byte e % 4 of word e / 4), then W_BLOCK f16 scales, one per
// row slot q % W_BLOCK. Element e of quad q is its int8 times the scale. The scales are f16 normal numbers or zero
// (with all-zero integers), so unpack2x16float is exact on any device.
const Q_TILE_QUADS: u32 = Q_GROUP_QUADS * W_BLOCK;
const Q_TILE_WORDS: u32 = 2u * Q_TILE_QUADS + W_BLOCK / 2u;

fn q8_scale(tile: u32, slot: u32) -> f32 {
  let word = tile * Q_TILE_WORDS + 2u * Q_TILE_QUADS + slot / 2u;
  let s = unpack2x16float(w[word / 4u][word % 4u]);
  return select(s.x, s.y, (slot & 1u) == 1u);
}

// The 4 signed bytes of a word, in byte order.
fn q8_bytes(word: u32) -> vec4f {
  return vec4f(bitcast<vec4i>(vec4u(word) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
}

// The scale of quad q: that of the Q_GROUP_QUADS quads q, q + W_BLOCK, ... of its tile (the next quads along K of
// its row), so a kernel walking K reads it once per group.
fn w_scale(quad: u32) -> f32 {
  return q8_scale(quad / Q_TILE_QUADS, quad % W_BLOCK);
}

// Quad q's values with its scale d (w_scale(q)).
fn load_w8_scaled(quad: u32, d: f32) -> array<vec2f, 4> {
  let i = quad % Q_TILE_QUADS;
  // Tiles are whole vec4s, so a quad's two words are one half of a vec4. They are read as two words, not as the
  // vec4: a CPU driver gathers every word of a load apart.
  let v = (quad / Q_TILE_QUADS) * (Q_TILE_WORDS / 4u) + i / 2u;
  let c = (i & 1u) * 2u;
  let lo = q8_bytes(w[v][c]) * d;
  let hi = q8_bytes(w[v][c + 1u]) * d;
  return array<vec2f, 4>(lo.xy, lo.zw, hi.xy, hi.zw);
}

fn load_w8(quad: u32) -> array<vec2f, 4> {
  return load_w8_scaled(quad, w_scale(quad));
}

fn load_w2(pair: u32) -> vec2f {
  let quad = pair / 4u;
  let tile = quad / Q_TILE_QUADS;
  let i = quad % Q_TILE_QUADS;
  let word = tile * Q_TILE_WORDS + 2u * i + (pair % 4u) / 2u;
  let b = q8_bytes(w[word / 4u][word % 4u]);
  return select(b.xy, b.zw, (pair & 1u) == 1u) * q8_scale(tile, i % W_BLOCK);
}
