// The Search-R3 model card's example in TypeScript: embed a query and two documents and score the documents by
// cosine similarity, with the query embedded both after the model reasons about it and directly.
// Run from the repository root after `npm run build`:
//   node dist/examples/model-card.js [MODEL_DIR] [MAX_NEW_TOKENS]
// Outside this repository, import from "r3gpu" instead of "../src/index.ts".
import { cosineSimilarity, nodeGpu, nodeModelDir, SearchR3 } from "../src/index.ts";

const modelDir = process.argv[2] ?? "models/tiny-qwen2";
// Caps the reasoning; by default the model writes at most 256 tokens (DEFAULT_REASONING_TOKENS) before the embedding.
const maxNewTokens = process.argv[3] === undefined ? undefined : Number(process.argv[3]);

const { device } = await nodeGpu();
const r3 = await SearchR3.load(device, nodeModelDir(modelDir));

const query = "what python library is useful for data analysis?";
const documents = [
  "pandas is a fast, powerful, flexible and easy to use open source data analysis and manipulation tool, built on top of the Python programming language.",
  "The giant panda is a bear species endemic to China.",
];

// With reasoning, the model writes about the query and ends with <|embed_token|>; the embedding is the hidden state
// there, read by encode from the whole sequence.
const [reasoning] = await r3.generate([query], { maxNewTokens });
const [reasoned] = await r3.encode([reasoning.text]);
// Without reasoning, the query gets a teacher-forced answer that ends with <|embed_token|>, as documents do.
const [direct] = await r3.encode([query], { kind: "query" });
const docs = await r3.encode(documents);

const row = (label: string, q: Float32Array) =>
  label.padEnd(20) + docs.map((d) => cosineSimilarity(q, d).toFixed(4).padStart(12)).join("");
console.log(`reasoning: ${JSON.stringify(reasoning.reasoning)}`);
console.log("".padEnd(20) + "pandas".padStart(12) + "giant panda".padStart(12));
console.log(row("with reasoning", reasoned));
console.log(row("without reasoning", direct));
