// Float64 references for the kernels, on the host: seeded inputs, the weight dtypes' roundings and the GPU weight
// layout written from its definition, linear layers and causal GQA attention with a stated error bound for each
// output, and the comparison against those bounds. The kernel unit tests check every variant against them, and
// `r3gpu tune --kernel` checks a user's kernel against them.
import type { GpuDType, QuantDType, WeightDType } from "../gpu/kernel.ts";
import { QUANT_LAYOUT, WEIGHT_LAYOUT } from "../gpu/layout.ts";
import { DTYPE_BYTES, isQuantized, layoutBytes } from "../gpu/matrix.ts";
import { dequantize, QUANT_GROUP, quantizeGroup } from "../model/quant.ts";
import type { AttentionDims } from "../ops/rope-kv.ts";
import type { Precision } from "../ops/variant.ts";

// ---------------------------------------------------------------------------------------------
// Seeded random numbers

/** n uniform values in [lo, hi), rounded to float32 (so the host sees exactly what the GPU gets). */
export function uniformF32(rand: () => number, n: number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

/** n standard-normal values (Box-Muller) times `scale`, rounded to float32. */
export function normalF32(rand: () => number, n: number, scale = 1): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rand();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weight dtypes on the host

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits of x, rounded to nearest even from x's float32 value (NaN stays NaN). */
export function toBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBf16Bits(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** IEEE half bits of x, rounded to nearest even directly from the float64 value (overflow -> inf). */
export function toF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  let e = a === 0 ? -15 : Math.floor(Math.log2(a));
  while (e > -15 && 2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const quantum = 2 ** (Math.max(e, -14) - 10); // spacing of halves around a (subnormals: 2^-24)
  const q = a / quantum;
  let m = Math.floor(q);
  const frac = q - m;
  if (frac > 0.5 || (frac === 0.5 && m % 2 === 1)) m++;
  const r = m * quantum;
  if (r > 65504) return sign | 0x7c00;
  if (r < 2 ** -14) return sign | Math.round(r / 2 ** -24);
  let e2 = Math.floor(Math.log2(r));
  while (2 ** e2 > r) e2--;
  while (2 ** (e2 + 1) <= r) e2++;
  return sign | ((e2 + 15) << 10) | (r / 2 ** (e2 - 10) - 1024);
}

export function fromF16Bits(b: number): number {
  const sign = b & 0x8000 ? -1 : 1;
  const e = (b >>> 10) & 0x1f;
  const m = b & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** Rounds each value to the nearest value representable in dtype (BF16 via float32, as torch does). */
export function quantize(values: ArrayLike<number>, dtype: WeightDType): Float32Array<ArrayBuffer> {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = dtype === "BF16" ? fromBf16Bits(toBf16Bits(v)) : dtype === "F16" ? fromF16Bits(toF16Bits(v)) : v;
  }
  return out;
}

/** Little-endian bytes of values stored in dtype (rounded to nearest even), as in a safetensors file. */
export function encodeWeights(values: ArrayLike<number>, dtype: WeightDType): Uint8Array<ArrayBuffer> {
  if (dtype === "F32") {
    const a = Float32Array.from(values);
    return new Uint8Array(a.buffer);
  }
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = dtype === "BF16" ? toBf16Bits(values[i]) : toF16Bits(values[i]);
  return new Uint8Array(bits.buffer);
}

// ---------------------------------------------------------------------------------------------
// The GPU weight layout

/** The blocked weight layout of src/gpu/layout.ts: blocks of rows of 8-element quads. */
const { block: ROW_BLOCK, lanes: LANES, groups: GROUPS } = WEIGHT_LAYOUT;

/**
 * One part's stored bytes (row-major [rows, cols], as in the file) in the GPU layout: pair kk of row `row` goes to pair slot quad(row, kk / 4) * 4 + kk % 4 with
 * quad(row, kq) = ((row / 32 * nq + kq) * 4 + (row % 32) / 8) * 8 + row % 8, nq = ceil(cols / 8),
 * and padding (cols to a multiple of 8, rows to a multiple of 32) is zero. Written from the layout's
 * definition rather than with the relayout kernel, so kernels reading it are checked independently.
 */
export function layoutWeights(rowMajor: Uint8Array, rows: number, cols: number, dtype: WeightDType): Uint8Array<ArrayBuffer> {
  const pairBytes = 2 * DTYPE_BYTES[dtype];
  const hk = cols / 2, nq = Math.ceil(hk / 4);
  const out = new Uint8Array(Math.ceil(rows / ROW_BLOCK) * ROW_BLOCK * nq * 4 * pairBytes);
  for (let row = 0; row < rows; row++) {
    const blk = Math.floor(row / ROW_BLOCK), r = Math.floor((row % ROW_BLOCK) / LANES), lane = row % LANES;
    for (let kk = 0; kk < hk; kk++) {
      const quad = ((blk * nq + Math.floor(kk / 4)) * GROUPS + r) * LANES + lane;
      const src = (row * hk + kk) * pairBytes;
      out.set(rowMajor.subarray(src, src + pairBytes), (quad * 4 + (kk % 4)) * pairBytes);
    }
  }
  return out;
}

export interface QuantizedPart {
  /** The part's bytes in the quantized layout: what the quantize kernel must write. */
  bytes: Uint8Array<ArrayBuffer>;
  /** The weights the kernels compute with (integer x scale, float32), row-major [rows, cols]. */
  values: Float32Array<ArrayBuffer>;
  /** Whether every group could be quantized (no NaN, infinity or f16 scale overflow). */
  ok: boolean;
}

/**
 * One part's row-major float32 values quantized on the host (quantizeGroup of src/model/quant.ts) into the layout of
 * QUANT_LAYOUT (src/gpu/layout.ts), written from the layout's definition: tile t holds the quads 128 t.. of the
 * blocked layout (8 int8 in byte order, or 8 int4 in nibble order from the low one), then 32 f16 scales, scale j for
 * the quads 128 t + 32 s + j (s < 4), whose quad index u = 4 t + s is quad u % nq of row (u / nq) * 32 + j.
 */
export function layoutQuantized(rowMajor: ArrayLike<number>, rows: number, cols: number, dtype: QuantDType): QuantizedPart {
  const nq = Math.ceil(cols / WEIGHT_LAYOUT.quadElements);
  const tileBytes = QUANT_LAYOUT.tileBytes[dtype];
  const quadBytes = dtype === "Q8" ? 8 : 4;
  const bytes = new Uint8Array(layoutBytes(Math.ceil(rows / ROW_BLOCK), cols, dtype));
  const values = new Float32Array(rows * cols);
  const x = new Float32Array(QUANT_GROUP);
  const q = new Int8Array(QUANT_GROUP);
  let ok = true;
  for (let t = 0; t < bytes.length / tileBytes; t++) {
    const tile = t * tileBytes;
    for (let j = 0; j < ROW_BLOCK; j++) {
      const at = (s: number, e: number) => {
        const u = 4 * t + s, row = Math.floor(u / nq) * ROW_BLOCK + j, k = (u % nq) * 8 + e;
        return row < rows && k < cols ? row * cols + k : -1;
      };
      for (let i = 0; i < QUANT_GROUP; i++) { const src = at(i >> 3, i & 7); x[i] = src < 0 ? 0 : rowMajor[src]; }
      const group = quantizeGroup(x, dtype, q);
      ok &&= group.ok;
      bytes[tile + QUANT_LAYOUT.tileQuads * quadBytes + 2 * j] = group.scale & 0xff;
      bytes[tile + QUANT_LAYOUT.tileQuads * quadBytes + 2 * j + 1] = group.scale >> 8;
      for (let i = 0; i < QUANT_GROUP; i++) {
        const s = i >> 3, e = i & 7, quad = tile + (s * ROW_BLOCK + j) * quadBytes;
        if (dtype === "Q8") bytes[quad + e] = q[i] & 0xff;
        else bytes[quad + (e >> 1)] |= q[i] << (4 * (e & 1));
        const dst = at(s, e);
        if (dst >= 0) values[dst] = dequantize(q[i], group.scale, dtype);
      }
    }
  }
  return { bytes, values, ok };
}

// ---------------------------------------------------------------------------------------------
// References and comparison

/** The float32 unit roundoff u = 2^-24: the error bounds of the references are multiples of it. */
export const F32_ROUNDOFF = 2 ** -24;
const F16_MIN_NORMAL = 2 ** -14;
const F16_MIN_SUBNORMAL = 2 ** -24;

/**
 * A bound on |f16(v) - v| for the kernel's conversion of v (an f32 value) to f16. WGSL lets a conversion round to
 * either neighbour, so the error is under one ulp, 2^-10 |v| in f16's normal range, rather than half an ulp; in
 * the subnormal range it is under 2^-24, or |v| where subnormals are flushed to zero. `exact`: v is an f16 value
 * when it is in the normal range (BF16 and F16 weights, whose significands have 8 and 11 bits).
 */
function f16ConversionError(v: number, exact: boolean): number {
  const a = Math.abs(v);
  if (a === 0) return 0;
  if (a < F16_MIN_NORMAL) return Math.max(a, F16_MIN_SUBNORMAL);
  return exact ? 0 : 2 ** -10 * a;
}

export interface LinearRefOptions {
  /** The variant's precision: which bound (default f32). */
  precision?: Precision;
  /** The weights' stored dtype (the f16 bound depends on it: quantized weights are not exact in f16). */
  dtype?: GpuDType;
  /** The output columns to compute (default all N), for subsampled checks of large shapes. */
  cols?: number[];
}

/**
 * Reference y rows computed from the rows xRows of x [T, K] (and y0 rows r = 0.. for xRows[r]), and the error
 * bound of each output, [xRows.length, cols.length].
 *
 * f32 variants: (K + 3) u * (sum_k |x w| + |bias| + |y0|) with u = 2^-24, the gamma bound of a sum of K products
 * and two more adds in any order (each product's rounding counted as one more term's).
 *
 * f16 variants (x and W rounded to f16, each product rounded to f16, the sums in f32): with ex, ew the conversion
 * errors of x and w (f16ConversionError: under 2^-10 relative, so at most ~1e-3 of each term; zero for BF16 and
 * F16 weights in f16's normal range) and q = f16(x) f16(w) exact, the product the kernel sums is
 * f16(q) = q (1 + d) with |d| <= 2^-11 (WGSL rounds f16 products correctly) when |q| >= 2^-14, and within |q| of q
 * below that (subnormal or flushed to zero). So each term is off the exact x w by at most
 *   ex (|w| + ew) + |x| ew + 2^-11 qmax + [qmin < 2^-14] min(qmax, 2^-14),
 * with qmax = (|x| + ex)(|w| + ew) and qmin = (|x| - ex)(|w| - ew) (both >= 0) bounding |q|; the f32 sum of the
 * terms, bias and y0 adds (K + 3) u * (sum_k (qmax + its rounding) + |bias| + |y0|) as above. Per output that is
 * about (2^-10 + 2^-11) sum |x w| ~ 1.5e-3 sum |x w| for BF16 and F16 weights and (2 * 2^-10 + 2^-11) ~ 2.4e-3
 * for F32 weights (also rounded), against the f32 bound's (K + 3) 2^-24 ~ 6e-6 at K = 94 and 3e-4 at K = 4864.
 */
export function linearRef(x: Float32Array, W: Float32Array, K: number, N: number, xRows: number[],
  bias: Float32Array | undefined, y0: Float32Array | undefined, opts: LinearRefOptions = {}): { y: Float64Array; bound: Float64Array } {
  const cols = opts.cols ?? Array.from({ length: N }, (_, n) => n);
  const f16 = opts.precision === "f16";
  const exactW = opts.dtype !== "F32" && !(opts.dtype && isQuantized(opts.dtype));
  const C = cols.length;
  const y = new Float64Array(xRows.length * C);
  const bound = new Float64Array(xRows.length * C);
  const ex = new Float64Array(K), ew = new Float64Array(K);
  for (let r = 0; r < xRows.length; r++) {
    const xo = xRows[r] * K;
    if (f16) for (let kk = 0; kk < K; kk++) ex[kk] = f16ConversionError(x[xo + kk], false);
    for (let c = 0; c < C; c++) {
      const n = cols[c], wo = n * K;
      let s = 0, mag = 0, err = 0;
      if (f16) {
        for (let kk = 0; kk < K; kk++) ew[kk] = f16ConversionError(W[wo + kk], exactW);
        for (let kk = 0; kk < K; kk++) {
          const xk = x[xo + kk], wk = W[wo + kk];
          s += xk * wk;
          const a = Math.abs(xk), b = Math.abs(wk);
          const qmax = (a + ex[kk]) * (b + ew[kk]);
          const qmin = Math.max(0, a - ex[kk]) * Math.max(0, b - ew[kk]);
          const ep = 2 ** -11 * qmax + (qmin < F16_MIN_NORMAL ? Math.min(qmax, F16_MIN_NORMAL) : 0);
          err += ex[kk] * (b + ew[kk]) + a * ew[kk] + ep;
          mag += qmax + ep;
        }
      } else {
        for (let kk = 0; kk < K; kk++) {
          const p = x[xo + kk] * W[wo + kk];
          s += p;
          mag += Math.abs(p);
        }
      }
      const b = bias ? bias[n] : 0, a = y0 ? y0[r * N + n] : 0;
      y[r * C + c] = s + b + a;
      bound[r * C + c] = err + (K + 3) * F32_ROUNDOFF * (mag + Math.abs(b) + Math.abs(a)) + 1e-30;
    }
  }
  return { y, bound };
}

/**
 * SwiGLU over a stacked gate/up projection's reference (linearRef of 2 I columns per row, gate then up):
 * act[r, n] = silu(g) u with g, u its columns n and I + n, and a bound from theirs: |silu'| <= 1.1 everywhere, so
 * the error is at most 1.1 bg (|u| + bu) + (|silu(g)| + 1.1 bg) bu, plus the f32 evaluation of g / (1 + exp(-g)) u
 * (exp within (3 + 2 |g|) ulp, as WGSL requires, and three roundings).
 */
export function swigluRef(gateUp: { y: Float64Array; bound: Float64Array }, rows: number, I: number): { y: Float64Array; bound: Float64Array } {
  const y = new Float64Array(rows * I), bound = new Float64Array(rows * I);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < I; n++) {
      const g = gateUp.y[r * 2 * I + n], u = gateUp.y[r * 2 * I + I + n];
      const bg = gateUp.bound[r * 2 * I + n], bu = gateUp.bound[r * 2 * I + I + n];
      const silu = g / (1 + Math.exp(-g));
      y[r * I + n] = silu * u;
      bound[r * I + n] = 1.1 * bg * (Math.abs(u) + bu) + (Math.abs(silu) + 1.1 * bg) * bu +
        (6 + 2 * Math.abs(g)) * F32_ROUNDOFF * 2 * Math.abs(silu * u) + 1e-30;
    }
  }
  return { y, bound };
}

export interface CloseReport {
  /** Largest |actual - expected|. */
  maxErr: number;
  /** Largest |actual - expected| / tol: how much of the tolerance was used (<= 1 on success). */
  maxRatio: number;
}

/**
 * Checks |actual[i] - expected[i]| <= tol(i) for every i (tol a number or a per-element bound) and
 * throws naming the first and the worst offenders; NaN in actual always fails.
 */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>,
  tol: number | ((i: number) => number), what: string): CloseReport {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  const bound = (i: number) => (typeof tol === "number" ? tol : tol(i));
  let maxErr = 0, maxRatio = 0, worst = 0, first = -1, failures = 0;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const b = bound(i);
    const ratio = Number.isNaN(err) ? Infinity : err === 0 ? 0 : err / b;
    if (!(err <= b)) {
      failures++;
      if (first < 0) first = i;
    }
    if (err > maxErr) maxErr = err;
    if (ratio > maxRatio) { maxRatio = ratio; worst = i; }
  }
  if (failures > 0) {
    const show = (i: number) => `[${i}] got ${actual[i]} want ${expected[i]} (tol ${bound(i).toExponential(2)})`;
    throw new Error(`${what}: ${failures}/${expected.length} elements out of tolerance; first ${show(first)}, worst ${show(worst)}`);
  }
  return { maxErr, maxRatio };
}

// ---------------------------------------------------------------------------------------------
// Attention reference

/**
 * Float64 causal GQA attention of every token of a step against its own sequence's KV cache, read from the token
 * table as the kernels read it: token t at position tokens[2t] of slot tokens[2t + 1] attends to cache rows
 * slot * slotLen + 0..position ([row, nKv, D] caches), query head h to KV head h / (nHeads / nKv); q [T, nHeads, D].
 * With it, a per-(t, h) error bound for float32 kernels, u = 2^-24:
 * - score error delta <= (D + 2) u * sum_d |q_d k_jd| / sqrt(D) (dot product, scaling, f32 scale);
 * - the softmax weights then move by at most 2 * (2 delta + exp error). WGSL's exp is within (3 + 2|x|) ULP; a
 *   weight is at most two exps whose arguments add up to s_j - max (split-KV's exp(s_j - m_chunk) and
 *   exp(m_chunk - max)), and averaged under the softmax E_p[max - s] = H(p) - ln Z <= ln n: (6 + 2 ln n) u;
 * - the online sums (n weights, rescaled at each of nb blocks) and the final division add (n + 2 nb + 2) u
 *   relative to each of numerator and denominator; nb = ceil(n / 16) + 1 covers the finest key tiles of any
 *   variant (16 keys) and one level of merged chunks.
 * The output error is at most max|v| times the sum of those.
 */
export function attentionRef(q: Float32Array, kc: Float32Array, vc: Float32Array, tokens: Uint32Array, slotLen: number, d: AttentionDims) {
  const { nHeads, nKv, headDim: D } = d;
  const U = 2 ** -24;
  const T = tokens.length / 2, group = nHeads / nKv, scale = 1 / Math.sqrt(D);
  const out = new Float64Array(T * nHeads * D), bound = new Float64Array(T * nHeads * D);
  for (let t = 0; t < T; t++) {
    const n = tokens[2 * t] + 1, row0 = tokens[2 * t + 1] * slotLen;
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / group);
      const qo = (t * nHeads + h) * D;
      const s = new Float64Array(n);
      let delta = 0, vmax = 0;
      for (let j = 0; j < n; j++) {
        const ko = ((row0 + j) * nKv + kvh) * D;
        let dot = 0, mag = 0;
        for (let e = 0; e < D; e++) {
          dot += q[qo + e] * kc[ko + e];
          mag += Math.abs(q[qo + e] * kc[ko + e]);
          vmax = Math.max(vmax, Math.abs(vc[ko + e]));
        }
        s[j] = dot * scale;
        delta = Math.max(delta, (D + 2) * U * mag * scale);
      }
      let m = -Infinity;
      for (let j = 0; j < n; j++) m = Math.max(m, s[j]);
      let z = 0;
      const p = s.map((x) => { const e = Math.exp(x - m); z += e; return e; });
      for (let e = 0; e < D; e++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += p[j] * vc[((row0 + j) * nKv + kvh) * D + e];
        out[qo + e] = acc / z;
      }
      const nb = Math.ceil(n / 16) + 1;
      const rel = 4 * delta + 2 * (6 + 2 * Math.log(n)) * U + 4 * (n + 2 * nb + 2) * U;
      bound.fill(vmax * rel + 1e-30, qo, qo + D);
    }
  }
  return { out, bound };
}
