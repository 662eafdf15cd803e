// `r3gpu embed`: the Search-R3 embedding of one query or document, printed as one JSON object.
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { SearchR3 } from "../search/searchr3.ts";
import { UsageError, integerFlag, parseCommand } from "./args.ts";
import { withLoadProgress } from "./progress.ts";

const USAGE = 'embed takes MODEL_DIR and either --query "..." or --doc "..."';

export async function embed(args: string[]): Promise<number> {
  const { positionals, values } = parseCommand(args, {
    query: { type: "string" },
    doc: { type: "string" },
    "no-reasoning": { type: "boolean", default: false },
    "max-length": { type: "string", default: "1024" },
    "max-new-tokens": { type: "string" },
  }, 1, USAGE);
  if ((values.query === undefined) === (values.doc === undefined)) throw new UsageError(USAGE);
  if (values.doc !== undefined && values["no-reasoning"]) throw new UsageError("--no-reasoning applies to --query only");
  const maxLength = integerFlag(values["max-length"], "--max-length", 2)!;
  const maxNewTokens = integerFlag(values["max-new-tokens"], "--max-new-tokens", 0);
  const reasoning = values.query !== undefined && !values["no-reasoning"];
  const text = (values.query ?? values.doc)!;

  const seconds = (since: number) => Number(((performance.now() - since) / 1000).toFixed(3));
  let t = performance.now();
  const { device } = await nodeGpu();
  const r3 = await withLoadProgress((onProgress) => SearchR3.load(device, nodeModelDir(positionals[0]), { maxLength, model: { onProgress } }));
  const timings: Record<string, number> = { load_s: seconds(t) };

  let embedText = text;
  let thought: string | null = null;
  if (reasoning) {
    t = performance.now();
    // stdout carries only the JSON; a person at a terminal watches the reasoning on stderr.
    const [r] = await r3.generate([text], {
      maxNewTokens, onText: (chunk) => process.stderr.isTTY && process.stderr.write(chunk),
    });
    if (process.stderr.isTTY) process.stderr.write("\n");
    embedText = r.text;
    thought = r.reasoning;
    timings.reasoning_s = seconds(t);
    timings.reasoning_tokens = r.generation.ids.length;
  }
  t = performance.now();
  const [embedding] = await r3.encode([embedText], { kind: values.query !== undefined ? "query" : "document" });
  timings.embed_s = seconds(t);

  const out = values.query !== undefined
    ? { text, reasoning: thought, embedding: Array.from(embedding), timings }
    : { text, embedding: Array.from(embedding), timings };
  console.log(JSON.stringify(out));
  return 0;
}
