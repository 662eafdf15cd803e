// The golden-value harness: runs a model on the sequences of MODEL_DIR/golden.json (+ golden.safetensors,
// produced by HF transformers in float64) and compares every stored tensor, the top-5 of the last logits
// and the greedy continuation. Tolerances are those of shared/golden/README.md.
import { readJson, type ModelDir } from "../io/files.ts";
import type { CaptureName, Qwen2Model } from "../model/qwen2.ts";
import { openSafetensors, readTensor } from "../model/safetensors.ts";

/** Max abs error allowed, relative to the tensor's max |reference|. */
export const TENSOR_TOLERANCE = 1e-4;

export interface TensorRow {
  sequence: number;
  tensor: string;
  maxAbsError: number;
  maxAbsRef: number;
  /** maxAbsError / maxAbsRef. */
  relError: number;
  ok: boolean;
  /** The first position (row) whose error exceeds the tolerance, with the value there. */
  firstBad?: { position: number; index: number; got: number; want: number };
}

export interface SequenceReport {
  sequence: number;
  length: number;
  top5: { ok: boolean; got: number[]; want: number[] };
  greedy: { ok: boolean; got: number[]; want: number[]; compared: number; note: string };
}

export interface GoldenReport {
  model: string;
  ok: boolean;
  rows: TensorRow[];
  sequences: SequenceReport[];
}

export function compareTensor(sequence: number, tensor: string, got: Float32Array, want: Float32Array, rowLength: number): TensorRow {
  if (got.length !== want.length) throw new Error(`seq${sequence} ${tensor}: got ${got.length} values, reference has ${want.length}`);
  let maxAbsRef = 0;
  for (const w of want) maxAbsRef = Math.max(maxAbsRef, Math.abs(w));
  const limit = TENSOR_TOLERANCE * maxAbsRef;
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
  return { sequence, tensor, maxAbsError, maxAbsRef, relError: maxAbsError / maxAbsRef, ok: !firstBad, firstBad };
}

/** The ids of the 5 largest logits, largest first; equal logits in id order. */
export function top5(logits: Float32Array): number[] {
  const idx = Array.from(logits.keys());
  return idx.sort((a, b) => logits[b] - logits[a] || a - b).slice(0, 5);
}

export interface GoldenOptions {
  /** Only run sequences up to this length (for quick checks). */
  maxLength?: number;
  onSequence?: (index: number, length: number) => void;
}

export async function runGoldenCheck(model: Qwen2Model, dir: ModelDir, opts: GoldenOptions = {}): Promise<GoldenReport> {
  const golden = await readJson(dir, "golden.json");
  const file = await openSafetensors(await dir.open(golden.tensor_file ?? "golden.safetensors"));
  const H = model.config.hiddenSize;
  const rows: TensorRow[] = [];
  const sequences: SequenceReport[] = [];
  try {
    const ref = async (name: string): Promise<Float32Array> => {
      const t = file.tensors.get(name);
      if (!t) throw new Error(`${file.source.name}: golden tensor "${name}" is missing`);
      return (await readTensor(t)) as Float32Array;
    };
    for (const seq of golden.sequences) {
      if (opts.maxLength && seq.length > opts.maxLength) continue;
      opts.onSequence?.(seq.index, seq.length);
      const ids: number[] = seq.input_ids;
      const layers: string[] = seq.tensors.hidden_per_layer ?? [];
      // hidden_per_layer names seq{i}.hidden.embed, seq{i}.hidden.layer{l}; captures use the part after "hidden."
      const captureOf = (name: string) => name.slice(name.lastIndexOf(".") + 1) as CaptureName;
      model.reset();
      const result = await model.prefill(ids, { capture: [...layers.map(captureOf), "final_norm"], logits: true });
      for (const name of layers) {
        rows.push(compareTensor(seq.index, name.replace(/^seq\d+\./, ""), result.captured.get(captureOf(name))!, await ref(name), H));
      }
      rows.push(compareTensor(seq.index, "final_norm_hidden", result.captured.get("final_norm")!, await ref(seq.tensors.final_norm_hidden), H));
      rows.push(compareTensor(seq.index, "last_logits", result.logits!, await ref(seq.tensors.last_logits), model.config.vocabSize));

      const gotTop = top5(result.logits!);
      const wantTop: number[] = seq.last_pos_top5_ids;
      const top5ok = gotTop.every((id, i) => id === wantTop[i]);

      // Greedy: exact while the reference margin between its top two logits exceeds our logit error;
      // past a step with a smaller margin, a different choice is not an engine error.
      const logitError = rows[rows.length - 1].maxAbsError;
      const want: number[] = seq.greedy.new_tokens;
      const got = [result.next];
      while (got.length < want.length) got.push(await model.step());
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
      sequences.push({ sequence: seq.index, length: seq.length, top5: { ok: top5ok, got: gotTop, want: wantTop },
        greedy: { ok, got, want, compared, note } });
    }
  } finally {
    await file.source.close();
  }
  const ok = rows.every((r) => r.ok) && sequences.every((s) => s.top5.ok && s.greedy.ok);
  return { model: dir.name, ok, rows, sequences };
}

/** The first thing that diverged, in forward order, as one sentence (or undefined when all passed). */
export function firstDivergence(report: GoldenReport): string | undefined {
  const row = report.rows.find((r) => !r.ok);
  if (row) {
    const b = row.firstBad!;
    return `seq${row.sequence} ${row.tensor}: position ${b.position}, element ${b.index}: got ${b.got}, reference ${b.want} ` +
      `(max abs error ${row.maxAbsError.toExponential(3)} > ${TENSOR_TOLERANCE} x max|ref| ${row.maxAbsRef.toFixed(4)})`;
  }
  const seq = report.sequences.find((s) => !s.top5.ok || !s.greedy.ok);
  if (!seq) return undefined;
  if (!seq.top5.ok) return `seq${seq.sequence} last-position top-5 ids: got [${seq.top5.got}], reference [${seq.top5.want}]`;
  return `seq${seq.sequence} greedy continuation: ${seq.greedy.note}`;
}
