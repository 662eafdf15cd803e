// Sampling maths as HF transformers does it (logits processors and warpers), as pure functions over a row of
// logits: repetition penalty, temperature, top-k, top-p, and the draw.

export interface SamplingParams {
  /** Divides the logits before softmax. Default 1. With doSample, 0 means greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (and any tied with the k-th, as HF does); 0 turns it off. Default 50, as HF. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p. Default 1 (off). */
  topP?: number;
}

/**
 * HF's RepetitionPenaltyLogitsProcessor, in place: for each distinct token in `tokens`, a positive logit is divided
 * by `penalty` and a negative one multiplied by it, so that penalty > 1 always makes the token less likely.
 */
export function applyRepetitionPenalty(logits: Float32Array, tokens: Iterable<number>, penalty: number): void {
  for (const id of new Set(tokens)) {
    const v = logits[id];
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/** Index of the largest value; the lowest index on ties (as torch.argmax and the GPU kernel). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Tokens that can be drawn, most likely first, with their probabilities (summing to 1). */
export interface Distribution {
  ids: Uint32Array;
  probs: Float64Array;
}

/**
 * The distribution HF samples from: logits / temperature, then top-k (keeping ties with the k-th logit), then top-p
 * over the softmax of what is left (a token is kept while the probability of the tokens before it is below p; the
 * most likely is always kept), renormalized. Ties in probability are ordered by id.
 */
export function samplingDistribution(logits: ArrayLike<number>, params: SamplingParams = {}): Distribution {
  const temperature = params.temperature ?? 1;
  const topK = params.topK ?? 0;
  const topP = params.topP ?? 1;
  if (!(temperature > 0)) throw new Error(`samplingDistribution: temperature must be > 0, got ${temperature}`);

  const threshold = topK > 0 && topK < logits.length ? kthLargest(logits, topK) : -Infinity;
  let kept: number[] = [];
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    // NaN fails both tests, so it is never a candidate.
    if (v >= threshold && v > -Infinity) {
      kept.push(i);
      if (v > max) max = v;
    }
  }
  if (kept.length === 0) throw new Error("samplingDistribution: no finite logit to sample from");
  // Scaling by 1/temperature after subtracting the max is the same softmax, computed without overflow.
  const weight = (id: number) => Math.exp((logits[id] - max) / temperature);
  let total = 0;
  for (const id of kept) total += weight(id);

  if (topP < 1) {
    // The top-p set is a most-likely-first prefix, so once the tokens at or above a weight hold p of the mass it lies
    // among them and only they need sorting. Those below this cut hold less than (1 - p) of the mass together, so
    // the rest hold at least p (checked all the same, for rounding).
    const cut = (1 - topP) * total / kept.length;
    const likely = kept.filter((id) => weight(id) >= cut);
    let mass = 0;
    for (const id of likely) mass += weight(id);
    if (mass >= topP * total) kept = likely;
  }
  const order = Uint32Array.from(kept);
  const w = new Float64Array(order.length);
  order.forEach((id, j) => { w[j] = weight(id); });
  const byWeight = Array.from(order.keys()).sort((a, b) => w[b] - w[a] || order[a] - order[b]);
  let n = byWeight.length;
  if (topP < 1) {
    let before = 0;
    for (n = 0; n < byWeight.length && (n === 0 || before < topP * total); n++) before += w[byWeight[n]];
  }
  const ids = new Uint32Array(n);
  const probs = new Float64Array(n);
  let sum = 0;
  for (let j = 0; j < n; j++) sum += w[byWeight[j]];
  for (let j = 0; j < n; j++) {
    ids[j] = order[byWeight[j]];
    probs[j] = w[byWeight[j]] / sum;
  }
  return { ids, probs };
}

/** The token at which the cumulative probability first exceeds u (u uniform in [0, 1)). */
export function drawToken(dist: Distribution, u: number): number {
  let cum = 0;
  for (let j = 0; j < dist.ids.length; j++) {
    cum += dist.probs[j];
    if (u < cum) return dist.ids[j];
  }
  // Rounding can leave the sum a hair below 1.
  return dist.ids[dist.ids.length - 1];
}

/** The k-th largest value (k >= 1), NaN counting as -Infinity. Quickselect, O(n) on average. */
function kthLargest(values: ArrayLike<number>, k: number): number {
  const a = Float32Array.from(values, (v) => (Number.isNaN(v) ? -Infinity : v));
  const target = k - 1;
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

