// The seeded random weights of shaders/random.wgsl, computed on the host: the same PCG hash, the same
// per-word seeding and the same float32 arithmetic, so a file written from these values (GGUF export of a
// benchmark shape) holds exactly the weights that RandomWeights generates on the GPU.
import { nameSeed, randomMatrixRange, randomVectorRange, type RandomRange } from "./weights.ts";

/** PCG-style integer hash of random.wgsl (u32 arithmetic wraps, as in WGSL). */
export function pcg(v: number): number {
  const state = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * Float32 bits of `center + scale * u` with u = (pcg(v) >> 8) / 2^23 - 1, which is exact in f32. The
 * double product of two f32 values is exact, so one fround gives WGSL's f32 product; adding the f32
 * center and rounding once more gives its f32 sum (exact in double for these magnitudes).
 */
function uniformBits(v: number, r: RandomRange): number {
  const u = (pcg(v) >>> 8) / 8388608 - 1;
  f32[0] = r.center + Math.fround(r.scale * u);
  return f32Bits[0];
}

/**
 * Rows [row0, row0 + rows) of the BF16 matrix RandomWeights.matrix(name, totalRows, cols) generates
 * with this seed, as bf16 bit patterns (row-major). cols must be even (values are generated in pairs).
 */
export function randomMatrixBf16(name: string, seed: number, cols: number, row0: number, rows: number): Uint16Array {
  if (cols % 2 !== 0) throw new Error(`randomMatrixBf16(${name}): cols ${cols} must be even`);
  const s = nameSeed(name, seed);
  const r = randomMatrixRange(cols);
  const out = new Uint16Array(rows * cols);
  const word0 = (row0 * cols) / 2;
  for (let i = 0; i < out.length / 2; i++) {
    const g = word0 + i;
    // The shader truncates (takes the high half of the f32 bits) rather than rounding to bf16.
    out[2 * i] = uniformBits(((2 * g) ^ s) >>> 0, r) >>> 16;
    out[2 * i + 1] = uniformBits(((2 * g + 1) ^ s) >>> 0, r) >>> 16;
  }
  return out;
}

/** The f32 vector RandomWeights.vector(name, length) generates with this seed. */
export function randomVectorF32(name: string, seed: number, length: number): Float32Array {
  const s = nameSeed(name, seed);
  const r = randomVectorRange(name);
  const out = new Uint32Array(length);
  for (let i = 0; i < length; i++) out[i] = uniformBits((i ^ s) >>> 0, r);
  return new Float32Array(out.buffer);
}
