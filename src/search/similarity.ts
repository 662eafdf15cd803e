// Vector similarity for embeddings: normalization, cosine similarity and distances, as the reference's helpers.

/** v / ||v||₂ (a zero vector stays zero). */
export function l2normalize(v: ArrayLike<number>): Float32Array {
  let sq = 0;
  for (let i = 0; i < v.length; i++) sq += v[i] * v[i];
  const scale = sq > 0 ? 1 / Math.sqrt(sq) : 0;
  return Float32Array.from(v, (x) => x * scale);
}

/** Cosine similarity; 0 when either vector is zero. */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  sameLength(a, b);
  let dot = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? dot / Math.sqrt(aa * bb) : 0;
}

/** m[i][j] = cosineSimilarity(A[i], B[j]). */
export function cosineMatrix(A: readonly ArrayLike<number>[], B: readonly ArrayLike<number>[]): number[][] {
  return A.map((a) => B.map((b) => cosineSimilarity(a, b)));
}

/** m[i][j] = ||A[i] - B[j]||₂, like torch.cdist(A, B) (p = 2). */
export function cdist(A: readonly ArrayLike<number>[], B: readonly ArrayLike<number>[]): number[][] {
  return A.map((a) => B.map((b) => {
    sameLength(a, b);
    let sq = 0;
    for (let i = 0; i < a.length; i++) sq += (a[i] - b[i]) ** 2;
    return Math.sqrt(sq);
  }));
}

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new Error(`vectors of different lengths: ${a.length} and ${b.length}`);
}
