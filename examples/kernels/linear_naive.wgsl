// A linear kernel of one's own, the plainest correct one: run it beside the built-ins with
//   npx r3gpu tune models/tiny-qwen2 --kernel linear.decode=examples/kernels/linear_naive.wgsl
// It keeps the linear family's contract (the bindings and uniforms of shaders/linear.wgsl, the ACCUMULATE
// override, bias under #if HAS_BIAS) and its dispatch: workgroups of WG invocations, each owning W_GROUPS weight
// rows (here consecutive ones) and TM input rows (TM is compiled in: 1, 2, 4 or 8). It walks K one element pair at
// a time through the weight layout's accessors (w_pair, load_w2), where the built-ins load 16-byte quads.
struct Params { M: u32, K: u32, N: u32, n0: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec2f>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override ACCUMULATE: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let hk = p.K / 2u;
  let nq = (hk + 3u) / 4u;
  for (var r = 0u; r < W_GROUPS; r++) {
    let n = gid.x * W_GROUPS + r;
    if (n >= p.rows) { return; }
    var b = 0.0;
#if HAS_BIAS
    b = bias[p.n0 + n];
#endif
    for (var i = 0u; i < TM; i++) {
      let m = wid.y * TM + i;
      if (m >= p.M) { break; }
      var acc = vec2f(0.0);
      for (var k = 0u; k < hk; k++) { acc += x[m * hk + k] * load_w2(w_pair(n, k, nq)); }
      let out = m * p.N + p.n0 + n;
      var v = acc.x + acc.y + b;
      if (ACCUMULATE) { v += y[out]; }
      y[out] = v;
    }
  }
}
