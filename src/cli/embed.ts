// `r3gpu embed`: the Search-R3 embedding of one query or document, printed as one JSON object.
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { SearchR3, type Truncation } from "../search/searchr3.ts";
import type { EmbedArgs } from "./commands.ts";
import { withLoadProgress } from "./load.ts";
import { stderrIsTTY } from "./terminal.ts";

export async function embed({ positionals, flags }: EmbedArgs): Promise<number> {
  const { query, doc, "max-length": maxLength, "max-new-tokens": maxNewTokens } = flags;
  const reasoning = query !== undefined && !flags["no-reasoning"];
  const text = (query ?? doc)!;

  const seconds = (since: number) => Number(((performance.now() - since) / 1000).toFixed(3));
  let t = performance.now();
  const { device } = await nodeGpu();
  const truncations: Truncation[] = [];
  const r3 = await withLoadProgress(flags, (load) => SearchR3.load(device, nodeModelDir(positionals.MODEL_DIR), {
    maxLength, model: load, onWarning: (message, truncation) => {
      truncations.push(truncation);
      console.error(`warning: ${message}`);
    },
  }));
  const timings: Record<string, number> = { load_s: seconds(t) };

  let embedText = text;
  let thought: { reasoning: string; emitted_embed_token: boolean; stop_reason: string } | undefined;
  if (reasoning) {
    t = performance.now();
    // stdout carries only the JSON; a person at a terminal watches the reasoning on stderr.
    const [r] = await r3.generate([text], { maxNewTokens, onText: (chunk) => stderrIsTTY() && process.stderr.write(chunk) });
    if (stderrIsTTY()) process.stderr.write("\n");
    embedText = r.text;
    thought = { reasoning: r.reasoning, emitted_embed_token: r.emittedEmbedToken, stop_reason: r.stopReason };
    timings.reasoning_s = seconds(t);
    timings.reasoning_tokens = r.generation.ids.length;
  }
  t = performance.now();
  const [embedding] = await r3.encode([embedText], { kind: query !== undefined ? "query" : "document" });
  timings.embed_s = seconds(t);

  // A query embedded without reasoning has no reasoning to report: null, so that every query output has the same keys.
  const queryFields = { reasoning: null, emitted_embed_token: null, stop_reason: null, ...thought };
  console.log(JSON.stringify({
    text, ...(query !== undefined ? queryFields : {}), truncated: truncations.length > 0, embedding: Array.from(embedding), timings,
  }));
  return 0;
}
