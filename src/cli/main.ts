// The r3gpu command line. Each subcommand parses its own flags; errors print one line and set a
// non-zero exit code (2 for usage errors, 1 for everything else).
import { runGoldenCheck, firstDivergence, TENSOR_TOLERANCE, top5, type GoldenReport } from "../check/golden.ts";
import { nodeGpu } from "../gpu/node.ts";
import { readJson } from "../io/files.ts";
import { nodeModelDir } from "../io/node.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { parseCommand, UsageError } from "./args.ts";
import { withLoadProgress } from "./progress.ts";
import { bench, profile } from "./bench.ts";
import { serve } from "./serve.ts";
import { exportGguf } from "./gguf.ts";
import { evaluate, index, search } from "./search.ts";
import { chat } from "./chat.ts";
import { embed } from "./embed.ts";
import { tokenize } from "./tokenize.ts";
import { download } from "./download.ts";

const USAGE = `usage: r3gpu <command> [options]

commands:
  check MODEL_DIR                 run the model on MODEL_DIR/golden.json and compare with the reference
  dump MODEL_DIR --ids 1,2,3 [--new-tokens N]
                                  print final-norm hidden states, top-5 logits and greedy tokens as JSON
  export-gguf MODEL_DIR OUT.gguf [--dtype f16|bf16|f32]
  export-gguf --shape qwen2.5-0.5b|qwen2.5-1.5b [--seed S] OUT.gguf [--dtype f16|bf16|f32]
                                  write a GGUF file for llama.cpp: a model folder, or the seeded random
                                  weights of a published shape (default seed 1); matrices in --dtype
                                  (default f16), norms and biases in f32
  serve MODEL_DIR [--db DB_DIR] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--model-id NAME]
        [--max-length 1024] [--context N] [--truncate] [--max-queue 64] [--max-inputs 256] [--max-body BYTES]
                                  OpenAI-compatible HTTP server (/v1/embeddings, /v1/chat/completions, /v1/models,
                                  /health; /search with --db); the API key may also come from R3GPU_API_KEY
  bench [--shape qwen2.5-0.5b|qwen2.5-1.5b|MODEL_DIR]... [--quick] [--json FILE] [--check] [--peer llama.cpp]
        [--peer-timeout S]
                                  roofline of the adapter, per-kernel and end-to-end figures (default shape
                                  qwen2.5-0.5b, random weights); --check exits 1 when a target is missed
  profile MODEL_DIR|--shape S [--tokens N]
                                  one decode step and one prefill of N tokens (default 128), split by kernel
  index MODEL_DIR CORPUS --db DB_DIR [--max-length 1024] [--chunk-tokens N] [--overlap N] [--batch 64]
        [--document-system TEXT] [--query-system TEXT]
                                  embed a folder of .txt/.md files, a JSONL file of {"id","text","title"?} or a
                                  BEIR corpus into a LanceDB index, in chunks of --chunk-tokens (default: what
                                  --max-length leaves after the prompt) overlapping by --overlap (default 1/8);
                                  resumable, re-embeds changed documents, refuses other models or settings
  search MODEL_DIR --db DB_DIR "question" [-k 10] [--no-reasoning] [--max-new-tokens N] [--exact] [--json]
                                  stream the model's reasoning about the question, then print the k best
                                  documents (score, id, source, snippet); --exact skips the ANN index
  eval MODEL_DIR --beir DIR [--split test] [--limit N] [--no-reasoning] [--json FILE] [--plot FILE.svg]
        [--db DB_DIR] [index options]
                                  index DIR/corpus.jsonl, run the first N queries of qrels/SPLIT.tsv and print
                                  nDCG@10, Recall@100 and MRR@10; --json writes {"metrics","run"} and a plot of
                                  per-query nDCG@10 beside it (FILE.svg, or --plot)
  chat MODEL_DIR [--prompt TEXT] [--system TEXT] [--context 4096] [--max-tokens N] [--temperature T]
        [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S]
                                  chat with the model, replies streamed; --prompt asks once, otherwise each line
                                  of stdin is a turn until /exit or end of input. --temperature 0 is greedy, > 0
                                  samples, as do --top-k/--top-p/--seed alone; else generation_config.json decides
  embed MODEL_DIR --query TEXT [--no-reasoning] | --doc TEXT [--max-length 1024] [--max-new-tokens N]
                                  print {"text", "reasoning" (queries), "embedding" (normalized), "timings"}; a
                                  query is reasoned about first unless --no-reasoning
  tokenize MODEL_DIR              JSON lines {"text"} on stdin -> {"ids", "decoded"} lines on stdout; needs only
                                  the tokenizer files
  download REPO_ID [--revision main] [--dir DIR]
                                  fetch a model from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN) into DIR
                                  (default: the repository's name); resumable, checks sizes and LFS hashes
`;

async function loadModel(dirPath: string, opts: LoadOptions = {}) {
  const { device, info } = await nodeGpu();
  const model = await withLoadProgress((onProgress) => Qwen2Model.load(device, nodeModelDir(dirPath), { ...opts, onProgress }));
  return { info, model };
}

async function check(args: string[]): Promise<number> {
  const { positionals } = parseCommand(args, {}, 1, "check needs MODEL_DIR");
  const dir = nodeModelDir(positionals[0]);
  if (!(await dir.exists("golden.json"))) throw new Error(`${dir.name}: no golden.json to check against`);
  const golden = await readJson(dir, "golden.json");
  const longest = Math.max(...golden.sequences.map((s: any) => s.length + s.greedy.new_tokens.length));
  const { model, info } = await loadModel(positionals[0], { maxSeqLen: longest });
  console.log(`model ${dir.name} on ${info.description || info.vendor || "WebGPU adapter"}`);
  const report = await runGoldenCheck(model, dir, {
    onSequence: (i, len) => process.stderr.isTTY && process.stderr.write(`sequence ${i} (${len} tokens)...\r`),
  });
  printReport(report);
  return report.ok ? 0 : 1;
}

function printReport(report: GoldenReport): void {
  console.log(`\n${"seq".padEnd(4)}${"tensor".padEnd(20)}${"max abs err".padStart(13)}${"max|ref|".padStart(11)}${"rel".padStart(11)}  ok`);
  for (const r of report.rows) {
    console.log(`${String(r.sequence).padEnd(4)}${r.tensor.padEnd(20)}${r.maxAbsError.toExponential(3).padStart(13)}` +
      `${r.maxAbsRef.toFixed(4).padStart(11)}${r.relError.toExponential(2).padStart(11)}  ${r.ok ? "yes" : "NO"}`);
  }
  console.log(`\ntolerance: max abs error <= ${TENSOR_TOLERANCE} x max|ref| per tensor\n`);
  for (const s of report.sequences) {
    console.log(`seq${s.sequence} (${s.length} tokens): top-5 ${s.top5.ok ? "match" : "DIFFER"}; greedy ` +
      `${s.greedy.ok ? "agrees" : "DIFFERS"} on ${s.greedy.compared}/${s.greedy.want.length} steps (${s.greedy.note})`);
  }
  const first = firstDivergence(report);
  console.log(first ? `\nFAIL: first divergence: ${first}` : "\nPASS: every tensor within tolerance, greedy continuations agree");
}

function parseIds(text: string): number[] {
  const ids = text.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (ids.length === 0) throw new UsageError("--ids: give a comma-separated list of token ids");
  const bad = ids.findIndex((id) => !Number.isInteger(id));
  if (bad >= 0) throw new UsageError(`--ids: "${text.split(",")[bad].trim()}" is not an integer token id`);
  return ids;
}

async function dump(args: string[]): Promise<number> {
  const { positionals, values } = parseCommand(args, { ids: { type: "string" }, "new-tokens": { type: "string", default: "0" } }, 1, "dump needs MODEL_DIR");
  if (values.ids === undefined) throw new UsageError("dump needs --ids");
  const ids = parseIds(values.ids as string);
  const newTokens = Number(values["new-tokens"]);
  if (!Number.isInteger(newTokens) || newTokens < 0) throw new UsageError(`--new-tokens must be a non-negative integer, got "${values["new-tokens"]}"`);
  const { model } = await loadModel(positionals[0], { maxSeqLen: ids.length + newTokens });
  const H = model.config.hiddenSize;
  const { next, captured, logits } = await model.prefill(ids, { capture: ["final_norm"], logits: true });
  const hidden = captured.get("final_norm")!;
  const top = top5(logits!);
  const greedy: number[] = [];
  if (newTokens > 0) {
    greedy.push(next);
    while (greedy.length < newTokens) greedy.push(await model.step());
  }
  const rows = Array.from({ length: ids.length }, (_, t) => Array.from(hidden.subarray(t * H, (t + 1) * H)));
  console.log(JSON.stringify({ ids, final_norm_hidden: rows, last_logits_top5: { ids: top, logits: top.map((i) => logits![i]) }, greedy }));
  return 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { check, dump, "export-gguf": exportGguf, serve, bench, profile, index, search, eval: evaluate, chat, embed, tokenize, download };

export async function run(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  try {
    if (!command) throw new UsageError(`unknown command "${name}"`);
    return await command(args);
  } catch (e) {
    const err = e as Error;
    console.error(`r3gpu ${name}: ${err.message}`);
    if (err instanceof UsageError) {
      console.error(USAGE);
      return 2;
    }
    return 1;
  }
}
