// `r3gpu embed`: the Search-R3 embedding of one query or document, printed as one JSON object; or, with --jsonl, of
// every JSON line of a file or stdin, in batches run together (the queries to reason about reasoned about together,
// then every text of the batch in one packed forward pass), one JSON object per line, in input order.
import { once } from "node:events";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { SearchR3, type Reasoning, type TextKind, type Truncation } from "../search/searchr3.ts";
import { suggestion } from "./args.ts";
import type { EmbedArgs } from "./commands.ts";
import { lineBatches, type NumberedLine } from "./line-batches.ts";
import { withLoadProgress } from "./load.ts";
import { stderrIsTTY } from "./terminal.ts";

/** One text to embed: a --query or --doc, or a line of --jsonl. */
interface EmbedInput {
  text: string;
  kind: TextKind;
  reasoning: boolean;
}

interface Warning {
  message: string;
  truncation: Truncation;
}

interface Batch {
  r3: SearchR3;
  /** Where SearchR3 reports truncations; drained after each call, so each warning can name its input. */
  warnings: Warning[];
  /** What a warning about the batch's input `index` starts with (its line, with --jsonl). */
  label: (index: number) => string;
  maxNewTokens: number;
  loadSeconds: number;
  onText?: (chunk: string) => void;
}

const seconds = (since: number) => Number(((performance.now() - since) / 1000).toFixed(3));

export async function embed({ positionals, flags }: EmbedArgs): Promise<number> {
  const { query, doc, jsonl, "max-length": maxLength, "max-new-tokens": maxNewTokens } = flags;
  // Opened before the model loads, so that a wrong path is reported at once.
  const input = jsonl === undefined ? undefined : await openInput(jsonl);
  try {
    const t = performance.now();
    const { device } = await nodeGpu();
    const warnings: Warning[] = [];
    const r3 = await withLoadProgress(flags, (load) => SearchR3.load(device, nodeModelDir(positionals.MODEL_DIR), {
      maxLength, batchSize: input ? flags["batch-size"] : 1, model: load,
      onWarning: (message, truncation) => warnings.push({ message, truncation }),
    }));
    const batch: Batch = { r3, warnings, label: () => "", maxNewTokens, loadSeconds: seconds(t) };

    if (!input) {
      // stdout carries only the JSON; a person at a terminal watches the reasoning on stderr.
      const onText = stderrIsTTY() ? (chunk: string) => process.stderr.write(chunk) : undefined;
      const one = { text: (query ?? doc)!, kind: query !== undefined ? "query" : "document", reasoning: query !== undefined && !flags["no-reasoning"] } as const;
      const [out] = await embedTogether({ ...batch, onText }, [one]);
      if (onText && one.reasoning) process.stderr.write("\n");
      console.log(JSON.stringify(out));
      return 0;
    }

    for await (const lines of lineBatches(input.stream, r3.batchSize)) {
      // The lines before a bad one are embedded and written, so the output is whole up to the line at fault.
      const inputs: EmbedInput[] = [];
      let bad: Error | undefined;
      for (const line of lines) {
        try {
          inputs.push(parseLine(line, input.name));
        } catch (e) {
          bad = e as Error;
          break;
        }
      }
      if (inputs.length > 0) {
        const outs = await embedTogether({ ...batch, label: (i) => `${input.name} line ${lines[i].number}: ` }, inputs);
        for (const out of outs) {
          // Waiting for the pipe to drain keeps the output from piling up in memory.
          if (!process.stdout.write(JSON.stringify(out) + "\n")) await once(process.stdout, "drain");
        }
      }
      if (bad) throw bad;
    }
    return 0;
  } finally {
    input?.stream.destroy();
  }
}

/** --jsonl's input: stdin for "-", else the file, checked to be one before anything loads. */
async function openInput(path: string): Promise<{ name: string; stream: Readable }> {
  if (path === "-") return { name: "stdin", stream: process.stdin };
  const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`--jsonl ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  });
  if (info.isDirectory()) throw new Error(`--jsonl ${path}: a folder, not a file of JSON lines`);
  return { name: path, stream: createReadStream(path) };
}

const KEYS = ["text", "kind", "reasoning"];

/** One --jsonl line, {"text", "kind"?, "reasoning"?}; anything else is an error naming the line and the fault. */
export function parseLine(line: NumberedLine, source: string): EmbedInput {
  const at = `${source} line ${line.number}`;
  let value: unknown;
  try {
    // A file saved with a byte-order mark has it before its first line.
    value = JSON.parse(line.number === 1 ? line.text.replace(/^\uFEFF/, "") : line.text);
  } catch (e) {
    throw new Error(`${at}: not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${at}: expected a JSON object {"text": ..., "kind"?: ..., "reasoning"?: ...}, got ${JSON.stringify(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!KEYS.includes(key)) throw new Error(`${at}: unknown key "${key}"${suggestion(key, KEYS)} (a line holds "text", "kind" and "reasoning")`);
  }
  const { text, kind = "document", reasoning = false } = value as Record<string, unknown>;
  if (text === undefined) throw new Error(`${at}: "text" is missing`);
  if (typeof text !== "string") throw new Error(`${at}: "text" must be a string, got ${JSON.stringify(text)}`);
  if (text.trim() === "") throw new Error(`${at}: "text" is empty`);
  if (kind !== "document" && kind !== "query") throw new Error(`${at}: "kind" must be "document" or "query", got ${JSON.stringify(kind)}`);
  if (typeof reasoning !== "boolean") throw new Error(`${at}: "reasoning" must be true or false, got ${JSON.stringify(reasoning)}`);
  if (reasoning && kind !== "query") throw new Error(`${at}: "reasoning": true applies only to "kind": "query"`);
  return { text, kind, reasoning };
}

/**
 * The outputs of inputs embedded together: the queries to reason about are reasoned about together (continuous
 * batching), then every text, reasoned or not, goes through one packed forward pass. The timings of reasoning and
 * embedding are the batch's.
 */
async function embedTogether(batch: Batch, inputs: readonly EmbedInput[]): Promise<object[]> {
  const { r3, warnings, label } = batch;
  const report = (inputOf: (index: number) => number) => {
    for (const { message, truncation } of warnings.splice(0)) console.error(`warning: ${label(inputOf(truncation.index))}${message}`);
  };
  const reasoned = inputs.flatMap((input, i) => (input.reasoning ? [i] : []));
  const thoughts = new Map<number, Reasoning>();
  let t = performance.now();
  if (reasoned.length > 0) {
    const results = await r3.generate(reasoned.map((i) => inputs[i].text), { maxNewTokens: batch.maxNewTokens, onText: batch.onText });
    report((index) => reasoned[index]);
    results.forEach((r, k) => thoughts.set(reasoned[k], r));
  }
  const reasoningSeconds = seconds(t);
  // What generate returns ends with the embed token, so it is embedded as it is.
  const prepared = inputs.map((input, i) => {
    try {
      return r3.prepare(thoughts.get(i)?.text ?? input.text, input.kind, i);
    } catch (e) {
      throw new Error(`${label(i)}${(e as Error).message}`);
    }
  });
  report((index) => index);
  t = performance.now();
  const embeddings = await r3.encodeIds(prepared.map((p) => p.ids));
  const embedSeconds = seconds(t);

  return inputs.map((input, i) => {
    const thought = thoughts.get(i);
    // A query embedded without reasoning has no reasoning to report: null, so that every query output has the same keys.
    const queryFields = input.kind !== "query" ? {} : {
      reasoning: thought?.reasoning ?? null, emitted_embed_token: thought?.emittedEmbedToken ?? null, stop_reason: thought?.stopReason ?? null,
    };
    const truncated = prepared[i].truncation !== undefined || (thought?.truncations.length ?? 0) > 0;
    const timings = {
      load_s: batch.loadSeconds,
      ...(thought ? { reasoning_s: reasoningSeconds, reasoning_tokens: thought.generation.ids.length } : {}),
      embed_s: embedSeconds,
    };
    return { text: input.text, ...queryFields, truncated, embedding: Array.from(embeddings[i]), timings };
  });
}
