// The r3gpu command line. Each subcommand parses its own flags; errors print one line and set a
// non-zero exit code (2 for usage errors, 1 for everything else).
import { parseArgs, type ParseArgsConfig } from "node:util";
import { runGoldenCheck, firstDivergence, TENSOR_TOLERANCE, type GoldenReport } from "../check/golden.ts";
import { nodeGpu } from "../gpu/node.ts";
import { readJson } from "../io/files.ts";
import { nodeModelDir } from "../io/node.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { Progress } from "./progress.ts";

export class UsageError extends Error {}

const USAGE = `usage: r3gpu <command> [options]

commands:
  check MODEL_DIR                 run the model on MODEL_DIR/golden.json and compare with the reference
  dump MODEL_DIR --ids 1,2,3 [--new-tokens N]
                                  print final-norm hidden states, top-5 logits and greedy tokens as JSON
`;

function parse<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O, positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true } as const);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} positional argument(s), got ${parsed.positionals.length}: ${parsed.positionals.join(" ")}`);
  }
  return parsed;
}

export async function loadModel(dirPath: string, opts: LoadOptions = {}) {
  const { device, info } = await nodeGpu();
  const dir = nodeModelDir(dirPath);
  const bar = new Progress("loading");
  const model = await Qwen2Model.load(device, dir, { ...opts, onProgress: (p) => bar.update(p.bytes, p.totalBytes, "B") });
  bar.done();
  return { device, info, dir, model };
}

async function check(args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, 1);
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
  const { positionals, values } = parse(args, { ids: { type: "string" }, "new-tokens": { type: "string", default: "0" } }, 1);
  if (values.ids === undefined) throw new UsageError("dump needs --ids");
  const ids = parseIds(values.ids as string);
  const newTokens = Number(values["new-tokens"]);
  if (!Number.isInteger(newTokens) || newTokens < 0) throw new UsageError(`--new-tokens must be a non-negative integer, got "${values["new-tokens"]}"`);
  const { model } = await loadModel(positionals[0], { maxSeqLen: ids.length + newTokens });
  const H = model.config.hiddenSize;
  const { next, captured, logits } = await model.prefill(ids, { capture: ["final_norm"], logits: true });
  const hidden = captured.get("final_norm")!;
  const top = Array.from(logits!.keys()).sort((a, b) => logits![b] - logits![a] || a - b).slice(0, 5);
  const greedy: number[] = [];
  if (newTokens > 0) {
    greedy.push(next);
    while (greedy.length < newTokens) greedy.push(await model.step());
  }
  const rows = Array.from({ length: ids.length }, (_, t) => Array.from(hidden.subarray(t * H, (t + 1) * H)));
  console.log(JSON.stringify({ ids, final_norm_hidden: rows, last_logits_top5: { ids: top, logits: top.map((i) => logits![i]) }, greedy }));
  return 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { check, dump };

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
