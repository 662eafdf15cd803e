// Search-R3 from Deno: embed a query and two documents, rank the documents, and let the model reason.
// Run from the repository root (after `npm run build`, which embeds the kernels):
//   node_modules/.bin/deno run --allow-read --allow-env examples/deno-example.ts [MODEL_DIR]
import { webGpu } from "../src/gpu/web.ts";
import { denoModelDir } from "../src/io/deno.ts";
import { SearchR3 } from "../src/search/searchr3.ts";
import { cosineMatrix } from "../src/search/similarity.ts";

export async function main(modelDir: string) {
  const { device } = await webGpu();
  const r3 = await SearchR3.load(device, denoModelDir(modelDir));
  const query = "what python library is useful for data analysis?";
  const documents = [
    "pandas is a fast, powerful, flexible and easy to use open source data analysis and manipulation tool, built on top of the Python programming language.",
    "The giant panda is a bear species endemic to China.",
  ];
  const [q] = await r3.encode([query], { kind: "query" });
  const docs = await r3.encode(documents);
  const [scores] = cosineMatrix([q], docs);
  const [reasoning] = await r3.generate([query], { maxNewTokens: 16 });
  return { scores, reasoning: reasoning.reasoning, emittedEmbedToken: reasoning.emittedEmbedToken };
}

if (import.meta.main) {
  console.log(await main(Deno.args[0] ?? "models/tiny-qwen2"));
}
