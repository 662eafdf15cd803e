// Quantizes one part of a weight matrix at load time, from the file's row-major order (a staging copy of the part,
// in the file's dtype) into the Q8 or Q4 layout of lib/weights_q8.wgsl and lib/weights_q4.wgsl, zero-filling the
// padding (K up to a multiple of 8, rows up to a multiple of W_BLOCK, quads up to a whole tile). The steps are those
// of quantizeGroup in src/model/quant.ts, which the tests hold this kernel to bit for bit: integer arithmetic on the
// bits, and float32 products and comparisons (correctly rounded on every device); the one division is a guess that
// the comparisons settle.
// Bindings: p, src: row-major words [rows, K] (two 16-bit values a word, or one f32), dst: the part's tiles [tiles],
// status: u32 [1], raised to p.id where a group holds NaN or infinity or its scale overflows f16.
// One invocation per (tile, pair of row slots): two groups of 32 weights (their scales share a word).
struct Params { rows: u32, K: u32, nq: u32, tiles: u32, id: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>>;

// The source dtype: 0 BF16, 1 F16, 2 F32.
override SRC: u32 = 0u;
// Q4 (else Q8).
override Q4: bool = false;

const GROUP_QUADS: u32 = 4u;
const TILE_QUADS: u32 = GROUP_QUADS * W_BLOCK;

// f32 bits of an f16, exactly (subnormal halves are normal floats).
fn f16_bits_to_f32(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 31u) { return sign | 0x7f800000u | (m << 13u); }
  if (e != 0u) { return sign | ((e + 112u) << 23u) | (m << 13u); }
  // m * 2^-24: both factors and the product are exact in f32.
  return sign | bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u));
}

// The f32 bits of element (row, k) of the row-major source.
fn source_bits(row: u32, k: u32) -> u32 {
  let at = row * p.K + k;
  if (SRC == 2u) { return src[at]; }
  let half = (src[at / 2u] >> (16u * (at % 2u))) & 0xffffu;
  if (SRC == 0u) { return half << 16u; }
  return f16_bits_to_f32(half);
}

// f16 bits of a positive float (bits), rounded to nearest even and raised to 2^-14; 0xffffffff on overflow.
fn f16_scale(a: u32) -> u32 {
  if (a >= 0x477ff000u) { return 0xffffffffu; }
  if (a < 0x38800000u) { return 0x0400u; }
  return ((a + 0xfffu + ((a >> 13u) & 1u)) - 0x38000000u) >> 13u;
}

// x / D rounded half up: the c with (c - 1/2) D <= x < (c + 1/2) D.
fn nearest(x: f32, D: f32) -> f32 {
  var c = floor(x / D + 0.5);
  if (x >= (c + 0.5) * D) { c += 1.0; } else if (x < (c - 0.5) * D) { c -= 1.0; }
  return c;
}

// Quantizes the group of row slot j of tile t: writes its quads' words; returns its scale's f16 bits.
fn quantize_group(t: u32, j: u32) -> u32 {
  var v: array<u32, 32>;
  var bad = false;
  var top = 0u;
  var top_at = 0u;
  for (var s = 0u; s < GROUP_QUADS; s++) {
    // Quad u of the blocked layout: block u / nq, quad u % nq of row slot j (past the last block: padding).
    let u = t * GROUP_QUADS + s;
    let row = (u / p.nq) * W_BLOCK + j;
    for (var e = 0u; e < 8u; e++) {
      let k = (u % p.nq) * 8u + e;
      var b = 0u;
      if (row < p.rows && k < p.K) { b = source_bits(row, k); }
      let i = s * 8u + e;
      v[i] = b;
      bad = bad || (b & 0x7f800000u) == 0x7f800000u;
      if ((b & 0x7fffffffu) > top) { top = b & 0x7fffffffu; top_at = i; }
    }
  }
  let base = t * select(2u * TILE_QUADS + W_BLOCK / 2u, TILE_QUADS + W_BLOCK / 2u, Q4);
  var scale = 0u;
  var D = 0.0;
  // Q4: d = m / -8, whose sign is the opposite of m's (from the bits: a flushed subnormal could lose it).
  let negative = Q4 && (v[top_at] & 0x80000000u) == 0u;
  if (top != 0u) {
    // Q8: max|x| / 127 (the f32 reciprocal's bits); Q4: |m| / 8.
    let factor = select(bitcast<f32>(0x3c010204u), 0.125, Q4);
    let h = f16_scale(bitcast<u32>(bitcast<f32>(top) * factor));
    if (h == 0xffffffffu) {
      bad = true;
    } else {
      scale = h;
      D = bitcast<f32>((h << 13u) + 0x38000000u);
    }
  }
  if (bad) { atomicMax(&status[0], p.id); }
  for (var s = 0u; s < GROUP_QUADS; s++) {
    var words = vec2u(0u);
    for (var e = 0u; e < 8u; e++) {
      let x = bitcast<f32>(v[s * 8u + e]);
      var field: u32;
      if (Q4) {
        var n = 8.0;
        if (D > 0.0) { n = clamp(nearest(select(x, -x, negative), D) + 8.0, 0.0, 15.0); }
        field = u32(n) << (4u * e);
      } else {
        var c = 0.0;
        if (D > 0.0) { c = min(nearest(abs(x), D), 127.0); }
        field = (bitcast<u32>(i32(select(c, -c, x < 0.0))) & 0xffu) << (8u * (e % 4u));
      }
      if (Q4 || e < 4u) { words.x |= field; } else { words.y |= field; }
    }
    let quad = s * W_BLOCK + j;
    if (Q4) {
      dst[base + quad] = words.x;
    } else {
      dst[base + 2u * quad] = words.x;
      dst[base + 2u * quad + 1u] = words.y;
    }
  }
  return select(0u, 0x8000u, negative && top != 0u) | scale;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.tiles * (W_BLOCK / 2u)) { return; }
  let t = i / (W_BLOCK / 2u);
  let j = 2u * (i % (W_BLOCK / 2u));
  let scales = quantize_group(t, j) | (quantize_group(t, j + 1u) << 16u);
  dst[t * select(2u * TILE_QUADS + W_BLOCK / 2u, TILE_QUADS + W_BLOCK / 2u, Q4) + select(2u, 1u, Q4) * TILE_QUADS + j / 2u] = scales;
}
