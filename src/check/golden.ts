// The golden-value harness: runs a model on the sequences of MODEL_DIR/golden.json (+ golden.safetensors,
// produced by HF transformers in float64) and compares every stored tensor, the top-5 of the last logits
// and the greedy continuation. Tolerances are those of shared/golden/README.md.
import { readJson, type ModelDir } from "../io/files.ts";
import type { CaptureName, Qwen2Model } from "../model/qwen2.ts";
import { openSafetensors, readTensor } from "../model/safetensors.ts";
import { GOLDEN_TOLERANCE } from "../ops/variant.ts";
import { cosineSimilarity } from "../search/similarity.ts";

/** Max abs error allowed, relative to the tensor's max |reference|, for an engine computing in f32. */
export const TENSOR_TOLERANCE = GOLDEN_TOLERANCE.f32;

export interface TensorRow {
  sequence: number;
  tensor: string;
  maxAbsError: number;
  maxAbsRef: number;
  /** maxAbsError / maxAbsRef. */
  relError: number;
  /** The largest relError allowed. */
  tolerance: number;
  ok: boolean;
  /** The first position (row) whose error exceeds the tolerance, with the value there. */
  firstBad?: { position: number; index: number; got: number; want: number };
}

/** How close a quantized model's outputs stay to the golden ones (GoldenOptions.minCosine). */
export interface Agreement {
  /** Cosine of final_norm_hidden to the golden's at each position. */
  cosine: number[];
  minCosine: number;
  /** Whether the largest last logit is the golden's. */
  top1: boolean;
  /** How many of the golden's five largest last logits are among ours. */
  top5: number;
  /** Greedy tokens equal to the golden's before the first that differs (of greedy.want.length). */
  greedy: number;
}

export interface SequenceReport {
  sequence: number;
  length: number;
  /** With GoldenOptions.minCosine only. */
  agreement?: Agreement;
  /** The ids of the five largest last logits, compared rank by rank while the reference's gaps exceed the logit error. */
  top5: { ok: boolean; got: number[]; want: number[]; compared: number };
  greedy: { ok: boolean; got: number[]; want: number[]; compared: number; note: string };
}

export interface GoldenReport {
  model: string;
  ok: boolean;
  /** Max abs error allowed per tensor, relative to its max|reference| (not a pass condition with minCosine). */
  tolerance: number;
  /** The comparison of quantized weights: the least cosine allowed at any position (GoldenOptions.minCosine). */
  minCosine?: number;
  rows: TensorRow[];
  sequences: SequenceReport[];
}

export function compareTensor(sequence: number, tensor: string, got: Float32Array, want: Float32Array, rowLength: number,
  tolerance = TENSOR_TOLERANCE): TensorRow {
  if (got.length !== want.length) throw new Error(`seq${sequence} ${tensor}: got ${got.length} values, reference has ${want.length}`);
  let maxAbsRef = 0;
  for (const w of want) maxAbsRef = Math.max(maxAbsRef, Math.abs(w));
  const limit = tolerance * maxAbsRef;
  let maxAbsError = 0;
  let firstBad: TensorRow["firstBad"];
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    // NaN must count as a failure, so compare with !(err <= limit).
    if (!(err <= limit) && !firstBad) {
      firstBad = { position: Math.floor(i / rowLength), index: i % rowLength, got: got[i], want: want[i] };
    }
    if (!(err <= maxAbsError)) maxAbsError = Number.isNaN(err) ? Infinity : err;
  }
  return { sequence, tensor, maxAbsError, maxAbsRef, relError: maxAbsError / maxAbsRef, tolerance, ok: !firstBad, firstBad };
}

/** The ids of the `k` largest logits, largest first; equal logits in id order. */
export function top5(logits: Float32Array, k = 5): number[] {
  const idx = Array.from(logits.keys());
  return idx.sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
}

export interface GoldenOptions {
  /** Only run sequences up to this length (for quick checks). */
  maxLength?: number;
  onSequence?: (index: number, length: number) => void;
  /**
   * Run the sequences together, packed into one batch (each in its own KV-cache slot; the model needs maxBatch
   * slots), in this order of their golden indices, and decode their greedy continuations together.
   */
  batchOrder?: number[];
  /** Max abs error allowed per tensor, relative to its max|reference| (default TENSOR_TOLERANCE; see choicePrecision). */
  tolerance?: number;
  /**
   * Compare as for quantized weights, whose errors are those of the weights rather than of the arithmetic: pass when
   * final_norm_hidden's cosine to the golden is at least this at every position; the error table, the top-1, top-5
   * and greedy agreement are reported beside it (Agreement).
   */
  minCosine?: number;
}

/** What the engine produced for one golden sequence. */
interface Produced {
  captured: Map<CaptureName, Float32Array>;
  logits: Float32Array;
  greedy: number[];
}

// hidden_per_layer names seq{i}.hidden.embed, seq{i}.hidden.layer{l}; captures use the part after "hidden."
const captureOf = (name: string) => name.slice(name.lastIndexOf(".") + 1) as CaptureName;
const capturesOf = (seq: any): CaptureName[] => [...(seq.tensors.hidden_per_layer ?? []).map(captureOf), "final_norm"];

/** Each sequence alone: prefill from an empty cache, then its greedy steps. */
async function oneAtATime(model: Qwen2Model, seqs: any[], opts: GoldenOptions): Promise<Produced[]> {
  const out: Produced[] = [];
  for (const seq of seqs) {
    opts.onSequence?.(seq.index, seq.length);
    model.reset();
    const result = await model.prefill(seq.input_ids, { capture: capturesOf(seq), logits: true });
    const greedy = [result.next];
    while (greedy.length < seq.greedy.new_tokens.length) greedy.push(await model.step());
    out.push({ captured: result.captured, logits: result.logits!, greedy });
  }
  return out;
}

/** All sequences in one packed prefill, then their greedy steps decoded together; results in `seqs` order. */
async function together(model: Qwen2Model, seqs: any[], order: number[]): Promise<Produced[]> {
  const batch = order.map((index) => {
    const seq = seqs.find((s) => s.index === index);
    if (!seq) throw new Error(`batchOrder: no golden sequence ${index}`);
    return seq;
  });
  if (new Set(order).size !== order.length || order.length !== seqs.length) {
    throw new Error(`batchOrder [${order}] must list each of the sequences ${seqs.map((s) => s.index)} once`);
  }
  batch.forEach((_, slot) => model.resetSlot(slot));
  const capture = [...new Set(batch.flatMap(capturesOf))];
  const first = await model.forward(batch.map((seq, slot) => ({ slot, ids: seq.input_ids })), { capture, logits: true });
  const greedy = first.map((r) => [r.next]);
  for (;;) {
    const running = batch.map((seq, slot) => ({ seq, slot })).filter(({ seq, slot }) => greedy[slot].length < seq.greedy.new_tokens.length);
    if (running.length === 0) break;
    const next = await model.forward(running.map(({ slot }) => ({ slot, ids: [greedy[slot].at(-1)!] })));
    running.forEach(({ slot }, i) => greedy[slot].push(next[i].next));
  }
  return seqs.map((seq) => {
    const slot = batch.indexOf(seq);
    return { captured: first[slot].captured as Map<CaptureName, Float32Array>, logits: first[slot].logits!, greedy: greedy[slot] };
  });
}

export async function runGoldenCheck(model: Qwen2Model, dir: ModelDir, opts: GoldenOptions = {}): Promise<GoldenReport> {
  const golden = await readJson(dir, "golden.json");
  const file = await openSafetensors(await dir.open(golden.tensor_file ?? "golden.safetensors"));
  const H = model.config.hiddenSize;
  const tolerance = opts.tolerance ?? TENSOR_TOLERANCE;
  const rows: TensorRow[] = [];
  const sequences: SequenceReport[] = [];
  try {
    const ref = async (name: string): Promise<Float32Array> => {
      const t = file.tensors.get(name);
      if (!t) throw new Error(`${file.source.name}: golden tensor "${name}" is missing`);
      return (await readTensor(t)) as Float32Array;
    };
    const seqs = golden.sequences.filter((seq: any) => !(opts.maxLength && seq.length > opts.maxLength));
    const produced = opts.batchOrder ? await together(model, seqs, opts.batchOrder) : await oneAtATime(model, seqs, opts);
    for (const [i, seq] of seqs.entries()) {
      const result = produced[i];
      for (const name of seq.tensors.hidden_per_layer ?? []) {
        rows.push(compareTensor(seq.index, name.replace(/^seq\d+\./, ""), result.captured.get(captureOf(name))!, await ref(name), H, tolerance));
      }
      rows.push(compareTensor(seq.index, "final_norm_hidden", result.captured.get("final_norm")!, await ref(seq.tensors.final_norm_hidden), H, tolerance));
      const refLogits = await ref(seq.tensors.last_logits);
      rows.push(compareTensor(seq.index, "last_logits", result.logits, refLogits, model.config.vocabSize, tolerance));
      const logitError = rows[rows.length - 1].maxAbsError;

      // Top-5: rank by rank while the reference's next logit is further below than twice our logit error; past a
      // closer pair the two may swap without an engine error.
      const gotTop = top5(result.logits);
      const wantTop: number[] = seq.last_pos_top5_ids;
      const ranked = top5(refLogits, 6).map((id) => refLogits[id]);
      let top5compared = 0;
      while (top5compared < 5 && ranked[top5compared] - ranked[top5compared + 1] > 2 * logitError) top5compared++;
      const top5ok = gotTop.slice(0, top5compared).every((id, i) => id === wantTop[i]);

      // Greedy: exact while the reference margin between its top two logits exceeds our logit error;
      // past a step with a smaller margin, a different choice is not an engine error.
      const want: number[] = seq.greedy.new_tokens;
      const got = result.greedy;
      let compared = 0;
      let ok = true;
      let note = "all steps match";
      for (let s = 0; s < want.length; s++) {
        const margin: number = seq.greedy.steps[s].margin_top1_top2;
        if (margin <= 2 * logitError) {
          note = `stopped comparing at step ${s}: reference margin ${margin.toExponential(2)} is within the logit error`;
          break;
        }
        compared++;
        if (got[s] !== want[s]) {
          ok = false;
          note = `step ${s}: got token ${got[s]}, reference ${want[s]} (margin ${margin.toExponential(2)})`;
          break;
        }
      }
      const agreement = opts.minCosine === undefined ? undefined
        : agreementOf(result.captured.get("final_norm")!, await ref(seq.tensors.final_norm_hidden), H, gotTop, wantTop, got, want);
      sequences.push({ sequence: seq.index, length: seq.length, agreement, top5: { ok: top5ok, got: gotTop, want: wantTop, compared: top5compared },
        greedy: { ok, got, want, compared, note } });
    }
  } finally {
    await file.source.close();
  }
  const ok = opts.minCosine === undefined
    ? rows.every((r) => r.ok) && sequences.every((s) => s.top5.ok && s.greedy.ok)
    : sequences.every((s) => s.agreement!.minCosine >= opts.minCosine!);
  return { model: dir.name, ok, tolerance, minCosine: opts.minCosine, rows, sequences };
}

function agreementOf(hidden: Float32Array, golden: Float32Array, H: number, gotTop: number[], wantTop: number[],
  got: number[], want: number[]): Agreement {
  const cos = Array.from({ length: golden.length / H }, (_, t) => cosineSimilarity(hidden.subarray(t * H, (t + 1) * H), golden.subarray(t * H, (t + 1) * H)));
  const greedy = want.findIndex((w, s) => got[s] !== w);
  return {
    cosine: cos, minCosine: cos.reduce((m, c) => (c >= m ? m : c), Infinity), top1: gotTop[0] === wantTop[0],
    top5: wantTop.filter((id) => gotTop.includes(id)).length, greedy: greedy < 0 ? want.length : greedy,
  };
}

/** The first thing that diverged, in forward order, as one sentence (or undefined when all passed). */
export function firstDivergence(report: GoldenReport): string | undefined {
  if (report.minCosine !== undefined) {
    const low = report.sequences.find((s) => !(s.agreement!.minCosine >= report.minCosine!));
    if (!low) return undefined;
    const at = low.agreement!.cosine.findIndex((c) => !(c >= report.minCosine!));
    return `seq${low.sequence} final_norm_hidden: cosine ${low.agreement!.cosine[at].toFixed(5)} to the golden at position ${at}, under ${report.minCosine}`;
  }
  const row = report.rows.find((r) => !r.ok);
  if (row) {
    const b = row.firstBad!;
    return `seq${row.sequence} ${row.tensor}: position ${b.position}, element ${b.index}: got ${b.got}, reference ${b.want} ` +
      `(max abs error ${row.maxAbsError.toExponential(3)} > ${row.tolerance} x max|ref| ${row.maxAbsRef.toFixed(4)})`;
  }
  const seq = report.sequences.find((s) => !s.top5.ok || !s.greedy.ok);
  if (!seq) return undefined;
  if (!seq.top5.ok) return `seq${seq.sequence} last-position top-5 ids: got [${seq.top5.got}], reference [${seq.top5.want}]`;
  return `seq${seq.sequence} greedy continuation: ${seq.greedy.note}`;
}
