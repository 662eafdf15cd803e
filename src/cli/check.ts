// `r3gpu check` (the golden-value harness on a model folder; with --quant, the quantized comparison and the Search-R3
// golden embeddings where the folder has them) and `r3gpu dump` (hidden states, logits and greedy tokens of given
// ids): the model itself, without a tokenizer (but for the Search-R3 embeddings).
import { firstDivergence, runGoldenCheck, top5, type GoldenReport } from "../check/golden.ts";
import { runSearchGoldenCheck } from "../check/search-golden.ts";
import { coveringChoices } from "../check/kernel-check.ts";
import { nodeGpu } from "../gpu/node.ts";
import { readJson, type ModelDir } from "../io/files.ts";
import { nodeModelDir } from "../io/node.ts";
import { MIN_COSINE, type Quantization } from "../model/quant.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { choicePrecision } from "../ops/kernel-variants.ts";
import { TUNED_CONTEXT } from "../ops/variant.ts";
import { SearchR3 } from "../search/searchr3.ts";
import type { CheckArgs, DumpArgs, KernelFlags } from "./commands.ts";
import { kernelOptions, withLoadProgress } from "./load.ts";
import { stderrIsTTY } from "./terminal.ts";

async function loadModel(dirPath: string, flags: KernelFlags, opts: LoadOptions = {}) {
  const { device, info } = await nodeGpu();
  const model = await withLoadProgress(flags, (load) => Qwen2Model.load(device, nodeModelDir(dirPath), { ...opts, ...load }));
  return { info, model, device };
}

export async function check({ positionals, flags }: CheckArgs): Promise<number> {
  const dir = nodeModelDir(positionals.MODEL_DIR);
  if (!(await dir.exists("golden.json"))) throw new Error(`${dir.name}: no golden.json to check against`);
  const golden = await readJson(dir, "golden.json");
  const longest = Math.max(...golden.sequences.map((s: any) => s.length + s.greedy.new_tokens.length));
  if (flags["all-variants"]) return checkAllVariants(dir, longest);
  // A cache of at least the tuned context, so that this load takes the kernels `r3gpu tune` chose for the model.
  const { model, info, device } = await loadModel(positionals.MODEL_DIR, flags, { maxSeqLen: Math.max(longest, TUNED_CONTEXT) });
  console.log(`model ${dir.name} on ${info.description || info.vendor || "WebGPU adapter"}`);
  console.log(`kernels: ${Object.entries(model.kernelChoice).map(([slot, v]) => `${slot}=${v}`).join(", ")}`);
  // Variants that compute in f16 are held to f16's tolerance, and the report says why; quantized weights to the
  // cosine of their mode.
  const { tolerance, f16 } = choicePrecision(model.kernelChoice);
  const report = await runGoldenCheck(model, dir, {
    tolerance, minCosine: model.quant && MIN_COSINE[model.quant],
    onSequence: (i, len) => stderrIsTTY() && process.stderr.write(`sequence ${i} (${len} tokens)...\r`),
  });
  printReport(report, f16.length > 0 ? ` (the f16 tolerance: ${f16.join(", ")} computes in half precision)` : "");
  const quant = model.quant;
  if (!quant) return report.ok ? 0 : 1;
  printAgreement(report, quant);
  model.destroy();
  if (!(await dir.exists("search-golden.json"))) return report.ok ? 0 : 1;
  // The Search-R3 embeddings need the tokenizer, and a model with room for their prompts: a load of its own.
  const r3 = await SearchR3.load(device, dir, { model: { ...kernelOptions(flags), quant } });
  try {
    const search = await runSearchGoldenCheck(r3, dir);
    const searchOk = search.minCosine >= MIN_COSINE[quant];
    const list = (xs: number[]) => xs.map((c) => c.toFixed(5)).join(" ");
    console.log(`\nSearch-R3 golden embeddings (${quant}): cosine to the golden, queries ${list(search.queries)}, documents ` +
      `${list(search.documents)}: min ${search.minCosine.toFixed(5)} ${searchOk ? "ok" : "LOW"}; documents ranked per query ` +
      `${search.rankings.map((r) => `[${r.got}]`).join(" ")} (golden ${search.rankings.map((r) => `[${r.golden}]`).join(" ")}): ` +
      `${search.rankingKept ? "kept" : "CHANGED"}`);
    console.log(searchOk ? `PASS (${quant}): embeddings' cosine >= ${MIN_COSINE[quant]}` : `FAIL (${quant}): an embedding's cosine is under ${MIN_COSINE[quant]}`);
    return report.ok && searchOk ? 0 : 1;
  } finally {
    r3.destroy();
  }
}

/** The quantized comparison: cosine per position, top-1, top-5 and greedy agreement, and the verdict. */
function printAgreement(report: GoldenReport, quant: Quantization): void {
  console.log(`\n${quant} weights: final_norm_hidden's cosine to the golden at every position must be >= ${report.minCosine}; ` +
    `the errors above are the weights', not held to the tolerance`);
  for (const s of report.sequences) {
    const a = s.agreement!;
    const shown = a.cosine.length <= 8 ? a.cosine.map((c) => c.toFixed(5)).join(" ") : `mean ${(a.cosine.reduce((x, y) => x + y, 0) / a.cosine.length).toFixed(5)}`;
    console.log(`seq${s.sequence} (${s.length} tokens): cosine min ${a.minCosine.toFixed(5)} (${shown}) ${a.minCosine >= report.minCosine! ? "ok" : "LOW"}; ` +
      `top-1 ${a.top1 ? "same" : "differs"}, top-5 ${a.top5}/5 shared, greedy ${a.greedy}/${s.greedy.want.length} steps before the first difference`);
  }
  const first = firstDivergence(report);
  console.log(first ? `\nFAIL (${quant}): ${first}` : `\nPASS (${quant}): cosine >= ${report.minCosine} at every position`);
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
  if (report.minCosine !== undefined) return;
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
