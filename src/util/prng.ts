// Mulberry32, a small fast seeded PRNG: sampling, benchmarks and tests draw reproducible numbers from it.

/** Mulberry32: a small, fast seeded PRNG, uniform in [0, 1). Good enough for sampling, not for cryptography. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

