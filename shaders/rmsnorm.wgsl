// RMSNorm (Qwen2): y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight.
// Bindings: p (uniform), x: f32 [rows, H], weight: f32 [H], y: f32 [rows, H].
// One workgroup per row; each invocation sums a strided slice, then a tree reduction in
// workgroup memory.
struct Params { H: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let base = wid.x * p.H;
  var sum = 0.0;
  for (var i = tid; i < p.H; i += WG) {
    let v = x[base + i];
    sum += v * v;
  }
  partial[tid] = sum;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      partial[tid] += partial[tid + stride];
    }
    workgroupBarrier();
  }
  let inv = inverseSqrt(partial[0] / f32(p.H) + p.eps);
  for (var i = tid; i < p.H; i += WG) {
    y[base + i] = x[base + i] * inv * weight[i];
  }
}
