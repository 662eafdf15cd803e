// Decode linear layer (one input row): y[n0 + n] (+)= sum_k x[x_row, k] * W[n, k] + bias[n0 + n]
// for n < rows. Same bindings and meaning as matmul.wgsl, with M = 1 and the input row chosen by
// x_row (the LM head reads only the last prompt position).
// One workgroup per ROWS output rows; its invocations stride over K so that neighbouring
// invocations read neighbouring weight words, then reduce in workgroup memory.
// Grid: (gx, gy) workgroups, linearised, because a vocabulary-sized N exceeds 65535 workgroups.
struct Params { M: u32, K: u32, N: u32, n0: u32, rows: u32, x_row: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2f>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
const WG: u32 = 64u;
const ROWS: u32 = 4u;
var<workgroup> partial: array<array<f32, WG>, ROWS>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let first = (wid.x + wid.y * nwg.x) * ROWS;
  if (first >= p.rows) { return; }  // uniform across the workgroup, so barriers stay legal
  let half_k = p.K / 2u;
  let xbase = p.x_row * half_k;
  var wrow: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) { wrow[r] = min(first + r, p.rows - 1u) * half_k; }

  var acc: array<f32, ROWS>;
  for (var kk = tid; kk < half_k; kk += WG) {
    let xv = x[xbase + kk];
    for (var r = 0u; r < ROWS; r++) { acc[r] += dot(xv, load_w2(wrow[r] + kk)); }
  }
  for (var r = 0u; r < ROWS; r++) { partial[r][tid] = acc[r]; }
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      for (var r = 0u; r < ROWS; r++) { partial[r][tid] += partial[r][tid + stride]; }
    }
    workgroupBarrier();
  }
  if (tid < ROWS && first + tid < p.rows) {
    let n = first + tid;
    var v = partial[tid][0];
    if (HAS_BIAS) { v += bias[p.n0 + n]; }
    if (ACCUMULATE) { v += y[p.n0 + n]; }
    y[p.n0 + n] = v;
  }
}
