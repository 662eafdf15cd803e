// Planning forward steps: the tokens of one or more sequences, each appended to its own KV-cache slot, packed into
// steps of at most `maxTokens` tokens with no padding. A sequence may span several steps (its later tokens attend
// to what the earlier steps wrote into its slot); a step gives output rows (logits, embeddings) only to the
// sequences whose last token it holds.
import type { Step } from "../ops/op.ts";

/** Tokens to append to one sequence: `ids` go to positions start, start + 1, ... of cache slot `slot`. */
export interface SequenceInput {
  slot: number;
  start: number;
  ids: ArrayLike<number>;
}

export interface StepPlan {
  step: Step;
  /** Token ids, one per row. */
  ids: Uint32Array<ArrayBuffer>;
  /** (position, slot) per row, as the attention kernels read them. */
  tokens: Uint32Array<ArrayBuffer>;
  /** Row of each output, in the order of `outputSequences`. */
  outputRows: Uint32Array<ArrayBuffer>;
  /** Index (into the inputs) of the sequence of each output row. */
  outputSequences: number[];
  /** The rows each input sequence occupies in this step: [sequence index, first row, rows, first token of it]. */
  spans: { sequence: number; row0: number; rows: number; offset: number }[];
}

/** Splits `inputs` into steps in order, filling each step to `maxTokens` tokens. */
export function planSteps(inputs: readonly SequenceInput[], maxTokens: number): StepPlan[] {
  const plans: StepPlan[] = [];
  let current: { ids: number[]; tokens: number[]; outputs: [number, number][]; spans: StepPlan["spans"]; keys: number; maxKeys: number } | undefined;
  const flush = () => {
    if (!current) return;
    const T = current.ids.length;
    plans.push({
      step: { T, outputs: current.outputs.length, keys: current.keys, maxKeys: current.maxKeys },
      ids: Uint32Array.from(current.ids),
      tokens: Uint32Array.from(current.tokens),
      outputRows: Uint32Array.from(current.outputs.map(([row]) => row)),
      outputSequences: current.outputs.map(([, s]) => s),
      spans: current.spans,
    });
    current = undefined;
  };
  inputs.forEach((input, s) => {
    for (let offset = 0; offset < input.ids.length;) {
      current ??= { ids: [], tokens: [], outputs: [], spans: [], keys: 0, maxKeys: 0 };
      const rows = Math.min(input.ids.length - offset, maxTokens - current.ids.length);
      const row0 = current.ids.length;
      for (let i = 0; i < rows; i++) {
        const pos = input.start + offset + i;
        current.ids.push(input.ids[offset + i]);
        current.tokens.push(pos, input.slot);
        current.keys += pos + 1;
        current.maxKeys = Math.max(current.maxKeys, pos + 1);
      }
      current.spans.push({ sequence: s, row0, rows, offset });
      offset += rows;
      if (offset === input.ids.length) current.outputs.push([row0 + rows - 1, s]);
      if (current.ids.length === maxTokens) flush();
    }
  });
  flush();
  return plans;
}
