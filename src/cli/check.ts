// `r3gpu check` (the golden-value harness on a model folder) and `r3gpu dump` (hidden states, logits and greedy
// tokens of given ids): the model itself, without a tokenizer.
import { firstDivergence, runGoldenCheck, top5, type GoldenReport } from "../check/golden.ts";
import { coveringChoices } from "../check/kernel-check.ts";
import { nodeGpu } from "../gpu/node.ts";
import { readJson, type ModelDir } from "../io/files.ts";
import { nodeModelDir } from "../io/node.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { choicePrecision } from "../ops/kernel-variants.ts";
import type { CheckArgs, DumpArgs, KernelFlags } from "./commands.ts";
import { withLoadProgress } from "./load.ts";
import { stderrIsTTY } from "./terminal.ts";

async function loadModel(dirPath: string, flags: KernelFlags, opts: LoadOptions = {}) {
  const { device, info } = await nodeGpu();
  const model = await withLoadProgress(flags, (load) => Qwen2Model.load(device, nodeModelDir(dirPath), { ...opts, ...load }));
  return { info, model };
}

export async function check({ positionals, flags }: CheckArgs): Promise<number> {
  const dir = nodeModelDir(positionals.MODEL_DIR);
  if (!(await dir.exists("golden.json"))) throw new Error(`${dir.name}: no golden.json to check against`);
  const golden = await readJson(dir, "golden.json");
  const longest = Math.max(...golden.sequences.map((s: any) => s.length + s.greedy.new_tokens.length));
  if (flags["all-variants"]) return checkAllVariants(dir, longest);
  const { model, info } = await loadModel(positionals.MODEL_DIR, flags, { maxSeqLen: longest });
  console.log(`model ${dir.name} on ${info.description || info.vendor || "WebGPU adapter"}`);
  console.log(`kernels: ${Object.entries(model.kernelChoice).map(([slot, v]) => `${slot}=${v}`).join(", ")}`);
  // Variants that compute in f16 are held to f16's tolerance, and the report says why.
  const { tolerance, f16 } = choicePrecision(model.kernelChoice);
  const report = await runGoldenCheck(model, dir, {
    tolerance,
    onSequence: (i, len) => stderrIsTTY() && process.stderr.write(`sequence ${i} (${len} tokens)...\r`),
  });
  printReport(report, f16.length > 0 ? ` (the f16 tolerance: ${f16.join(", ")} computes in half precision)` : "");
  return report.ok ? 0 : 1;
}

/** The golden check once per load of coveringChoices: every variant the adapter supports runs in one of them. */
async function checkAllVariants(dir: ModelDir, maxSeqLen: number): Promise<number> {
  const { device, info } = await nodeGpu();
  const choices = coveringChoices(device);
  console.log(`model ${dir.name} on ${info.description || info.vendor || "WebGPU adapter"}: ${choices.length} loads run every variant it supports`);
  let failed = 0;
  for (const choice of choices) {
    const named = Object.entries(choice).map(([slot, v]) => `${slot}=${v}`).join(", ");
    const { tolerance } = choicePrecision(choice);
    const model = await Qwen2Model.load(device, dir, { maxSeqLen, kernels: choice });
    try {
      const report = await runGoldenCheck(model, dir, { tolerance });
      const worst = Math.max(...report.rows.map((r) => r.relError));
      console.log(`${report.ok ? "PASS" : "FAIL"}: ${named} (tolerance ${tolerance} x max|ref|, worst ${worst.toExponential(2)})` +
        (report.ok ? "" : `: ${firstDivergence(report)}`));
      if (!report.ok) failed++;
    } finally {
      model.destroy();
    }
  }
  console.log(failed === 0 ? `\nPASS: every variant within tolerance` : `\nFAIL: ${failed} of ${choices.length} loads out of tolerance`);
  return failed === 0 ? 0 : 1;
}

function printReport(report: GoldenReport, why: string): void {
  console.log(`\n${"seq".padEnd(4)}${"tensor".padEnd(20)}${"max abs err".padStart(13)}${"max|ref|".padStart(11)}${"rel".padStart(11)}  ok`);
  for (const r of report.rows) {
    console.log(`${String(r.sequence).padEnd(4)}${r.tensor.padEnd(20)}${r.maxAbsError.toExponential(3).padStart(13)}` +
      `${r.maxAbsRef.toFixed(4).padStart(11)}${r.relError.toExponential(2).padStart(11)}  ${r.ok ? "yes" : "NO"}`);
  }
  console.log(`\ntolerance: max abs error <= ${report.tolerance} x max|ref| per tensor${why}\n`);
  for (const s of report.sequences) {
    console.log(`seq${s.sequence} (${s.length} tokens): top-5 ${s.top5.ok ? "match" : "DIFFER"} on ${s.top5.compared}/5 ranks; greedy ` +
      `${s.greedy.ok ? "agrees" : "DIFFERS"} on ${s.greedy.compared}/${s.greedy.want.length} steps (${s.greedy.note})`);
  }
  const first = firstDivergence(report);
  console.log(first ? `\nFAIL: first divergence: ${first}` : "\nPASS: every tensor within tolerance, greedy continuations agree");
}

/**
 * Every sequence in one batch, each in its own KV-cache slot: one packed prefill, then the greedy tokens of all of them
 * decoded together (they all want the same number).
 */
export async function dump({ positionals, flags }: DumpArgs): Promise<number> {
  const { ids: sequences, "new-tokens": newTokens } = flags;
  const longest = Math.max(...sequences.map((ids) => ids.length));
  const { model } = await loadModel(positionals.MODEL_DIR, flags, { maxSeqLen: longest + newTokens, maxBatch: sequences.length });
  const H = model.config.hiddenSize;
  const first = await model.forward(sequences.map((ids, slot) => ({ slot, ids })), { capture: ["final_norm"], logits: true });
  const greedy = first.map((r) => (newTokens > 0 ? [r.next] : []));
  while (greedy[0].length > 0 && greedy[0].length < newTokens) {
    const next = await model.forward(greedy.map((g, slot) => ({ slot, ids: [g.at(-1)!] })));
    next.forEach((r, slot) => greedy[slot].push(r.next));
  }
  sequences.forEach((ids, i) => {
    const hidden = first[i].captured.get("final_norm")!;
    const logits = first[i].logits!;
    const top = top5(logits);
    const rows = Array.from({ length: ids.length }, (_, t) => Array.from(hidden.subarray(t * H, (t + 1) * H)));
    console.log(JSON.stringify({ ids, final_norm_hidden: rows, last_logits_top5: { ids: top, logits: top.map((id) => logits[id]) }, greedy: greedy[i] }));
  });
  return 0;
}
