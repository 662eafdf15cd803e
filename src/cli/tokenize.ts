// `r3gpu tokenize`: JSON lines {"text": ...} on stdin to {"ids": [...], "decoded": ...} lines on stdout. Only the
// tokenizer files are read, so a folder holding just those works too.
import { once } from "node:events";
import { createInterface } from "node:readline";
import { nodeModelDir } from "../io/node.ts";
import { TextTokenizer } from "../text/tokenizer.ts";
import type { TokenizeArgs } from "./commands.ts";

export async function tokenize({ positionals }: TokenizeArgs): Promise<number> {
  const tokenizer = await TextTokenizer.load(nodeModelDir(positionals.MODEL_DIR));
  let n = 0;
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    n++;
    if (line.trim() === "") continue;
    let text: unknown;
    try {
      text = JSON.parse(line)?.text;
    } catch (e) {
      throw new Error(`stdin line ${n}: ${(e as Error).message}`);
    }
    if (typeof text !== "string") throw new Error(`stdin line ${n}: expected a JSON object with a string "text"`);
    let ids: number[];
    try {
      ids = tokenizer.encode(text);
    } catch (e) {
      throw new Error(`stdin line ${n}: ${(e as Error).message}`);
    }
    // Waiting for the pipe to drain keeps a large input from piling up in memory.
    if (!process.stdout.write(JSON.stringify({ ids, decoded: tokenizer.decode(ids) }) + "\n")) await once(process.stdout, "drain");
  }
  return 0;
}
