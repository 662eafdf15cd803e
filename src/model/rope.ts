// Rotary embedding table: (cos, sin) for every position and frequency, in the float32 arithmetic
// HF uses for the angles (inv_freq and position * inv_freq are float32 there, even in a float64
// model). cos/sin themselves are taken in float64 here rather than on the GPU, whose cos/sin lose
// accuracy at the large angles of long contexts.
export function ropeTable(headDim: number, theta: number, positions: number): Float32Array<ArrayBuffer> {
  const half = headDim / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    invFreq[i] = 1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / headDim)));
  }
  const table = new Float32Array(positions * half * 2);
  for (let pos = 0; pos < positions; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      table[(pos * half + i) * 2] = Math.cos(angle);
      table[(pos * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  return table;
}
