// Moves one part of a weight matrix from the file's row-major order into the layout of
// lib/weight_layout.wgsl, zero-filling the padding (K up to a multiple of 8, rows up to a multiple of W_BLOCK).
// Runs once at load time on a temporary row-major copy, so the host never reorders weights.
// Bindings: p, src: row-major words [rows, hk * PAIR_WORDS], dst: laid-out words [words].
// One invocation per destination word. PAIR_WORDS: 1 for 16-bit dtypes, 2 for F32.
struct Params { rows: u32, hk: u32, nq: u32, words: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

override PAIR_WORDS: u32 = 1u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.words) { return; }
  let pair = i / PAIR_WORDS;
  // A quad holds 4 pairs (one vec4u of 16-bit pairs).
  let quad = pair / 4u;
  let lane = quad % W_LANES;
  let r = (quad / W_LANES) % W_GROUPS;
  let rest = quad / W_BLOCK;
  let row = (rest / p.nq) * W_BLOCK + r * W_LANES + lane;
  let kk = (rest % p.nq) * 4u + pair % 4u;
  var v = 0u;
  if (row < p.rows && kk < p.hk) {
    v = src[(row * p.hk + kk) * PAIR_WORDS + i % PAIR_WORDS];
  }
  dst[i] = v;
}
