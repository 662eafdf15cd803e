// Weights quantized at load: which matrices get which quantized dtype, and the quantization of one group of 32
// weights on the host. The load-time kernel (shaders/quantize.wgsl) runs the same steps on the GPU, and the tests
// check that the two agree bit for bit; the GGUF export (src/llamacpp/convert.ts) writes Q8_0 and Q4_0 blocks from
// them, so llama.cpp runs on exactly the values r3gpu does.
//
// Q8 is GGUF's Q8_0: d = max|x| / 127 as an f16, q = round(x / d) (half away from zero) in -127..127. Q4 is its
// Q4_0: m = the x of largest |x| (the first on ties), d = m / -8 as an f16, n = round(x / d) + 8 (half up) clamped to
// 0..15, the value (n - 8) d: m itself is exactly n = 0. Every step is an exact or correctly rounded float32
// operation, or integer arithmetic on the bits, so any device gets the same bits: the division that finds the
// nearest integer is only a first guess, settled by comparing x with the products (c +- 1/2) d. The f16 scale is
// rounded to nearest even and kept at least 2^-14 (f16's smallest normal), so a device that flushes subnormals reads
// it exactly too; it is 0 only for a group of zeros.
import type { QuantDType } from "../gpu/kernel.ts";

/** `quant` of LoadOptions: int8 or int4 weights (see quantizedDType for which matrices and why). */
export type Quantization = "q8" | "q4";
export const QUANTIZATIONS: readonly Quantization[] = ["q8", "q4"];

/** How the commands name a model's weights: "bf16" is the dtype the files store (BF16 for Qwen2.5), unquantized. */
export type WeightMode = "bf16" | Quantization;
export const WEIGHT_MODES: readonly WeightMode[] = ["bf16", ...QUANTIZATIONS];

/** LoadOptions.quant of a mode. */
export const quantOf = (mode: WeightMode): Quantization | undefined => (mode === "bf16" ? undefined : mode);

/**
 * The least cosine of final_norm_hidden to the float64 golden at any position that `r3gpu check --quant` passes
 * (int8 keeps about 2.5 significant digits of each weight, int4 about one).
 */
export const MIN_COSINE: Record<Quantization, number> = { q8: 0.999, q4: 0.98 };

/** The weights of one scale. */
export const QUANT_GROUP = 32;

/** What a weight matrix does, which decides its dtype in each mode (quantizedDType). */
export type MatrixRole = "attention" | "mlp" | "embedding" | "lm_head";

/** Where a layer's matrix sits: layer `index` of `count` (q4's dtype of an MLP depends on it). */
export interface LayerPosition { index: number; count: number }

/**
 * The layers whose MLP q4 keeps in Q8: the first 1/32 of the model's layers, at least one. An error made in a layer
 * passes through every later one, which magnify it; measured on the shared golden models (2 layers), the first layer's
 * MLP in Q8 raises q4's worst-position cosine from 0.92-0.95 to 0.99 and the last layer's only to 0.93-0.95, and on
 * random models of the same init with 4 and 8 layers the first layers' MLP in Q8 gains the most of any choice of the
 * same bytes (README.md, "Quantized weights"). Qwen2.5-1.5B (28 layers) holds one layer's MLP in Q8: 21 MB more.
 */
export const q4MlpInQ8 = (layer: LayerPosition): boolean => layer.index < Math.ceil(layer.count / 32);

/**
 * The dtype a matrix is stored in, or undefined where it keeps the file's dtype. Measured on the shared golden models
 * (worst-position cosine of final_norm_hidden; README.md, "Quantized weights"): int8 attention projections and an
 * int8 embedding lookup cost the most accuracy per byte read, and the LM head, which is read whole at every decode
 * step, does not reach final_norm_hidden at all.
 * - q8: the MLP and the LM head in Q8; the attention's projections and the embedding lookup in the file's dtype (a
 *   tied table is then held twice, as the lookup and as the int8 LM head). The attention is 9-12% of a Qwen2.5
 *   decode step's weight bytes and the lookup reads one row per token, so little of the bandwidth saving is lost.
 * - q4: the MLP in Q4 (88% of a layer's weights) but in the first layers (q4MlpInQ8), everything else in Q8, one
 *   table for both uses: the smallest footprint (Qwen2.5-1.5B under 1.1 GB).
 * `layer` is the matrix's place for the layers' matrices (attention and MLP).
 */
export function quantizedDType(mode: Quantization, matrix: MatrixRole, layer?: LayerPosition): QuantDType | undefined {
  if (mode === "q4") {
    if (matrix !== "mlp") return "Q8";
    if (!layer) throw new Error("quantizedDType: an MLP matrix needs its layer's position");
    return q4MlpInQ8(layer) ? "Q8" : "Q4";
  }
  return matrix === "mlp" || matrix === "lm_head" ? "Q8" : undefined;
}

const f32 = new Float32Array(1);
const bitsOf = new Uint32Array(f32.buffer);
const bits = (x: number) => { f32[0] = x; return bitsOf[0]; };
const fromBits = (b: number) => { bitsOf[0] = b; return f32[0]; };

const Q8_RECIPROCAL = Math.fround(1 / 127);
/** f32 bits of 2^-14 (the smallest normal f16) and of 65520 (the first float that rounds to an f16 infinity). */
const F16_MIN_NORMAL_F32 = 0x38800000;
const F16_OVERFLOW_F32 = 0x477ff000;

/** f16 bits of a positive float32 (as bits), rounded to nearest even and raised to 2^-14; -1 when it overflows f16. */
function f16Scale(a: number): number {
  if (a >= F16_OVERFLOW_F32) return -1;
  if (a < F16_MIN_NORMAL_F32) return 0x0400;
  return ((a + 0xfff + ((a >>> 13) & 1)) - 0x38000000) >>> 13;
}

/** The value of a positive normal f16 (bits). */
const f16Value = (h: number) => fromBits(((h & 0x7fff) << 13) + 0x38000000);

/** The integer c with (c - 1/2) D <= x < (c + 1/2) D in float32, D > 0: x / D rounded half up. */
function nearest(x: number, D: number): number {
  let c = Math.floor(x / D + 0.5);
  if (x >= Math.fround((c + 0.5) * D)) c++;
  else if (x < Math.fround((c - 0.5) * D)) c--;
  return c;
}

export interface QuantizedGroup {
  /** The scale's f16 bits. */
  scale: number;
  /** False when the group holds NaN or infinity, or its scale overflows f16 (the integers are then meaningless). */
  ok: boolean;
}

/**
 * Quantizes x[0..31] (float32 values) into out[0..31]: Q8 integers -127..127, or Q4's n = 0..15 (the value n - 8).
 * Returns the scale's f16 bits.
 */
export function quantizeGroup(x: ArrayLike<number>, dtype: QuantDType, out: Int8Array | Uint8Array): QuantizedGroup {
  let ok = true;
  let top = 0, topAt = 0;
  for (let i = 0; i < QUANT_GROUP; i++) {
    const b = bits(x[i]);
    if ((b & 0x7f800000) === 0x7f800000) ok = false;
    const a = b & 0x7fffffff;
    if (a > top) { top = a; topAt = i; }
  }
  if (top === 0) {
    out.fill(dtype === "Q8" ? 0 : 8, 0, QUANT_GROUP);
    return { scale: 0, ok };
  }
  if (dtype === "Q8") {
    const scale = f16Scale(bits(Math.fround(fromBits(top) * Q8_RECIPROCAL)));
    if (scale < 0) return { scale: 0x7c00, ok: false };
    const D = f16Value(scale);
    for (let i = 0; i < QUANT_GROUP; i++) {
      const c = Math.min(nearest(Math.abs(Math.fround(x[i])), D), 127);
      out[i] = x[i] < 0 ? -c : c;
    }
    return { scale, ok };
  }
  // d = m / -8: its sign is the opposite of m's, from the bits (a flushed subnormal could lose it).
  const negative = (bits(x[topAt]) & 0x80000000) === 0;
  const magnitude = f16Scale(bits(Math.fround(fromBits(top) * 0.125)));
  if (magnitude < 0) return { scale: 0xfc00, ok: false };
  const D = f16Value(magnitude);
  for (let i = 0; i < QUANT_GROUP; i++) {
    const v = Math.fround(x[i]);
    out[i] = Math.min(Math.max(nearest(negative ? -v : v, D) + 8, 0), 15);
  }
  return { scale: (negative ? 0x8000 : 0) | magnitude, ok };
}

/** The value of an f16 scale (bits of quantizeGroup: a normal number or zero). */
export function scaleValue(scale: number): number {
  return (scale & 0x7fff) === 0 ? 0 : (scale & 0x8000 ? -1 : 1) * f16Value(scale);
}

/** Weight i of a quantized group as the kernels compute it: the integer times the scale, in float32. */
export function dequantize(q: number, scale: number, dtype: QuantDType): number {
  return Math.fround((dtype === "Q8" ? q : q - 8) * scaleValue(scale));
}
