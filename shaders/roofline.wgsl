// Roofline probes for the benchmark (bench/roofline.ts): the best the adapter can do, measured with the
// same API path as the model's kernels, to judge those kernels against. One kernel, variants chosen by
// the VARIANT override; each variant's function below says what it measures.
//   0 STRIDED, 1 LANE_CONTIGUOUS, 2 OCTET, 3 BLOCK: stream a buffer and reduce it (read bandwidth;
//     the benchmark keeps the best, since which access order streams fastest depends on the hardware);
//   4 FMA: register-only multiply-adds (peak arithmetic rate);
//   5 EMPTY: no work at all (the cost of one dispatch).
// Bindings: p (uniform), src: vec4<u32> [n] (read), out: u32 [1+] (rw). A result is stored only when it
// equals p.magic, which the host picks so that this practically never happens but the compiler cannot
// know it: no work is optimised away and no write traffic is added. Every variant binds `out` read-write
// so that it gets the same inter-dispatch barriers as the model's kernels.
// Grid: (gx, gy) workgroups of WG, linearised; the read variants cover n with per_lane vec4 per invocation.
struct Params { n: u32, per_lane: u32, iters: u32, magic: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override VARIANT: u32 = 0u;

fn read_at(i: u32) -> vec4<u32> {
  if (i < p.n) { return src[i]; }
  return vec4<u32>(0u);
}

// STRIDED: invocation `lane` of `lanes` reads lane, lane + lanes, lane + 2 lanes, ...: at every step
// neighbouring invocations read neighbouring 16-byte words (the access order GPUs coalesce).
fn strided(lane: u32, lanes: u32) -> vec4<u32> {
  var acc = vec4<u32>(0u);
  for (var k = 0u; k < p.per_lane; k++) { acc += read_at(lane + k * lanes); }
  return acc;
}

// LANE_CONTIGUOUS: each invocation streams its own run of per_lane consecutive words (the access order
// of one CPU thread per invocation).
fn lane_contiguous(lane: u32) -> vec4<u32> {
  var acc = vec4<u32>(0u);
  let base = lane * p.per_lane;
  for (var k = 0u; k < p.per_lane; k++) { acc += read_at(base + k); }
  return acc;
}

// OCTET: each run of 8 neighbouring invocations streams one contiguous block of 8 * per_lane words,
// the 8 reading 8 neighbouring words (128 bytes) at every step: contiguous per SIMD group of the
// narrowest common width (a CPU driver's 8 lanes), and whole cache lines for wider GPU subgroups.
fn octet(lane: u32) -> vec4<u32> {
  var acc = vec4<u32>(0u);
  let base = (lane / 8u) * 8u * p.per_lane + lane % 8u;
  for (var k = 0u; k < p.per_lane; k++) { acc += read_at(base + k * 8u); }
  return acc;
}

// BLOCK: each workgroup streams one contiguous block of WG * per_lane words, its invocations
// interleaved within it (contiguous per workgroup, coalesced within it).
fn block(group: u32, lid: u32) -> vec4<u32> {
  var acc = vec4<u32>(0u);
  let base = group * WG * p.per_lane + lid;
  for (var k = 0u; k < p.per_lane; k++) { acc += read_at(base + k * WG); }
  return acc;
}

// FMA: 8 independent chains of vec4 fma, enough to cover the latency of the multiply-add units;
// 64 flops per invocation per iteration. b < 1 keeps values bounded and away from denormals.
fn fma_loop(lane: u32) -> f32 {
  let b = vec4f(0.9990234375);
  let c = vec4f(0.0009765625);
  let s = vec4f(f32(lane & 1023u) * 0.0009765625) + vec4f(0.0, 0.25, 0.5, 0.75);
  var a0 = s; var a1 = s + 0.125; var a2 = s + 0.25; var a3 = s + 0.375;
  var a4 = s + 0.5; var a5 = s + 0.625; var a6 = s + 0.75; var a7 = s + 0.875;
  for (var i = 0u; i < p.iters; i++) {
    a0 = fma(a0, b, c); a1 = fma(a1, b, c); a2 = fma(a2, b, c); a3 = fma(a3, b, c);
    a4 = fma(a4, b, c); a5 = fma(a5, b, c); a6 = fma(a6, b, c); a7 = fma(a7, b, c);
  }
  let t = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
  return t.x + t.y + t.z + t.w;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  if (VARIANT == 5u) { return; }
  let group = wid.x + wid.y * nwg.x;
  let lane = group * WG + lid;
  var r = 0u;
  if (VARIANT == 4u) {
    r = bitcast<u32>(fma_loop(lane));
  } else {
    var v: vec4<u32>;
    if (VARIANT == 0u) { v = strided(lane, nwg.x * nwg.y * WG); }
    else if (VARIANT == 1u) { v = lane_contiguous(lane); }
    else if (VARIANT == 2u) { v = octet(lane); }
    else { v = block(group, lid); }
    r = v.x ^ v.y ^ v.z ^ v.w;
  }
  if (r == p.magic) { out[0] = r; }
}
