// Weight dtype conversion on the host, chunk by chunk, with IEEE round-to-nearest-even. Widening
// (BF16/F16 -> F32) is exact; narrowing rounds once from the float32 value; Q8_0 and Q4_0 blocks are quantized from
// it by quantizeGroup, the steps r3gpu's load-time kernel takes, so llama.cpp runs on the values r3gpu's --quant does.
import { QUANT_GROUP, quantizeGroup } from "../model/quant.ts";
import { halfToFloatBits, type DType } from "../model/safetensors.ts";
import type { GgmlTypeName } from "./writer.ts";

export type FloatDType = Exclude<DType, "I32">;

const BYTES: Record<FloatDType, number> = { BF16: 2, F16: 2, F32: 4 };

/** float32 bits -> bfloat16 bits, rounded to nearest even; NaN stays a (quiet) NaN. */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 bits -> IEEE half bits, rounded to nearest even; overflow -> infinity, NaN stays a (quiet) NaN. */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;
  // 65520 (0x477ff000) is halfway between the largest half, 65504, and the next power of two; ties go to even = inf.
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs >= 0x38800000) {
    // Normal half: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits; a carry bumps the exponent.
    const rounded = abs + 0xfff + ((abs >>> 13) & 1);
    return sign | ((rounded - 0x38000000) >>> 13);
  }
  // Below 2^-14 the half is subnormal: units of 2^-24. abs = m * 2^(e - 150) with the implicit bit in m.
  const e = abs >>> 23;
  if (e < 102) return sign; // below 2^-25: rounds to zero
  const m = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  let q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (q & 1) === 1)) q++;
  return sign | q;
}

export interface ConvertStats {
  /** Finite inputs that became infinite in the target type (F16 overflows beyond 65504). */
  overflows: number;
}

/**
 * GGUF blocks of float32 values (bits), 32 to a block: an f16 scale, then the 32 int8 (Q8_0) or 16 bytes of 4-bit
 * values, value j in the low nibble of byte j and value j + 16 in its high nibble (Q4_0), as ggml defines them.
 */
function quantizedBlocks(bits: Uint32Array, to: "Q8_0" | "Q4_0"): Uint8Array {
  if (bits.length % QUANT_GROUP !== 0) throw new Error(`convertWeights: ${bits.length} values is not a whole number of ${to} blocks of ${QUANT_GROUP}`);
  const dtype = to === "Q8_0" ? "Q8" : "Q4";
  const blockBytes = to === "Q8_0" ? 34 : 18;
  const out = new Uint8Array((bits.length / QUANT_GROUP) * blockBytes);
  const x = new Float32Array(bits.buffer, bits.byteOffset, bits.length);
  const q = new Int8Array(QUANT_GROUP);
  for (let b = 0; b < bits.length / QUANT_GROUP; b++) {
    const group = quantizeGroup(x.subarray(b * QUANT_GROUP, (b + 1) * QUANT_GROUP), dtype, q);
    if (!group.ok) {
      throw new Error(`values ${b * QUANT_GROUP}..${(b + 1) * QUANT_GROUP - 1} of the chunk hold NaN, infinity or weights too large for ` +
        `an f16 scale, so they cannot be written as ${to}`);
    }
    const at = b * blockBytes;
    out[at] = group.scale & 0xff;
    out[at + 1] = group.scale >>> 8;
    if (dtype === "Q8") for (let i = 0; i < QUANT_GROUP; i++) out[at + 2 + i] = q[i] & 0xff;
    else for (let i = 0; i < QUANT_GROUP / 2; i++) out[at + 2 + i] = q[i] | (q[i + QUANT_GROUP / 2] << 4);
  }
  return out;
}

/**
 * Converts little-endian values of `from` to `to`. `bytes` must hold whole values. Returns a new array
 * (or `bytes` itself when the types match).
 */
export function convertWeights(bytes: Uint8Array, from: FloatDType, to: GgmlTypeName, stats?: ConvertStats): Uint8Array {
  if (bytes.byteLength % BYTES[from] !== 0) throw new Error(`convertWeights: ${bytes.byteLength} bytes is not a whole number of ${from} values`);
  if (from === to) return bytes;
  const n = bytes.byteLength / BYTES[from];
  // Typed arrays need aligned offsets; chunks read from files usually are, but a subarray need not be.
  const src = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const bits: Uint32Array = from === "F32" ? new Uint32Array(src.buffer, src.byteOffset, n) : new Uint32Array(n);
  if (from !== "F32") {
    const h = new Uint16Array(src.buffer, src.byteOffset, n);
    if (from === "BF16") for (let i = 0; i < n; i++) bits[i] = h[i] << 16;
    else for (let i = 0; i < n; i++) bits[i] = halfToFloatBits(h[i]);
  }
  if (to === "Q8_0" || to === "Q4_0") return quantizedBlocks(bits, to);
  // Here `from` differs from F32 (equal types returned above), so `bits` is a fresh array.
  if (to === "F32") return new Uint8Array(bits.buffer);
  const narrow = to === "BF16" ? f32BitsToBf16 : f32BitsToF16;
  const inf = to === "BF16" ? 0x7f80 : 0x7c00;
  const out = new Uint16Array(n);
  let overflows = 0;
  for (let i = 0; i < n; i++) {
    const h = narrow(bits[i]);
    if ((h & 0x7fff) === inf && (bits[i] & 0x7fffffff) < 0x7f800000) overflows++;
    out[i] = h;
  }
  if (stats) stats.overflows += overflows;
  return new Uint8Array(out.buffer);
}
