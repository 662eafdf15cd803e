// SearchR3.encode's throughput at several batch sizes, the measurement behind DEFAULT_BATCH_SIZE: the same ragged
// documents embedded with each batchSize (texts packed into one forward pass per batch), the median of --runs after
// a warm-up pass. MODEL_DIR is a Search-R3 folder; --shape a published Qwen2.5 shape with the bench's seeded random
// weights and the tokenizer of models/tiny-qwen2 (the Qwen2.5 vocabulary with <|embed_token|>). Kernels are chosen
// as the CLI chooses them (measured at load, cached).
//
//   npm run bench:encode -- [MODEL_DIR | --shape qwen2.5-0.5b] [--batch 1,2,4,8,16] [--texts 16] [--runs 3]
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { openModel, RANDOM_SEED } from "../src/bench/model.ts";
import { nodeGpu } from "../src/gpu/node.ts";
import { median } from "../src/gpu/timer.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { isQwen25Shape } from "../src/model/shapes.ts";
import { DEFAULT_BATCH_SIZE, SearchR3 } from "../src/search/searchr3.ts";
import { ChatTemplate } from "../src/text/chat.ts";
import { Engine } from "../src/text/engine.ts";
import { TextTokenizer } from "../src/text/tokenizer.ts";
import { fsTuneCache } from "../src/tune/cache-fs.ts";
import { mulberry32 } from "../src/util/prng.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    shape: { type: "string" },
    batch: { type: "string", default: `1,2,4,${DEFAULT_BATCH_SIZE},16` },
    texts: { type: "string", default: "16" },
    runs: { type: "string", default: "3" },
  },
});
const batches = values.batch!.split(",").map(Number);
const [nTexts, runs] = [Number(values.texts), Number(values.runs)];
if (batches.some((b) => !Number.isInteger(b) || b < 1) || !Number.isInteger(nTexts) || nTexts < 1 || !Number.isInteger(runs) || runs < 1) {
  throw new Error("--batch takes positive integers (1,2,4,8), --texts and --runs a positive integer");
}
if (values.shape !== undefined && !isQwen25Shape(values.shape)) throw new Error(`--shape ${values.shape}: not a published Qwen2.5 shape`);
const source = values.shape ?? resolve(positionals[0] ?? join(root, "models", "tiny-qwen2"));

// Documents of one to five sentences (about 20 to 120 tokens), seeded, so that batches are ragged as real ones are.
const SENTENCES = [
  "pandas is a fast, powerful, flexible and easy to use open source data analysis and manipulation tool.",
  "Use list.reverse() to reverse a list in place, or reversed(lst) to get a reversed iterator.",
  "Zürich has many hiking trails; the Uetliberg offers views over the city and the lake.",
  "The mitochondrion is the organelle that produces most of the chemical energy a cell needs.",
  "A binary search halves the interval it looks in at every step, so it needs about log2(n) comparisons.",
  "The giant panda is a bear species endemic to China, living in the mountain ranges of Sichuan.",
];
const random = mulberry32(7);
const texts = Array.from({ length: nTexts }, () =>
  Array.from({ length: 1 + Math.floor(5 * random()) }, () => SENTENCES[Math.floor(random() * SENTENCES.length)]).join(" "));

const { device, info } = await nodeGpu();
const maxBatch = Math.max(...batches);
const { model } = await openModel(device, source, 1024, undefined, maxBatch, { tune: { cache: fsTuneCache() } });
const tokenizer = await TextTokenizer.load(nodeModelDir(values.shape ? join(root, "models", "tiny-qwen2") : source));
const r3 = new SearchR3(new Engine(model, tokenizer, ChatTemplate.fromTokenizer(tokenizer)), { maxLength: 1024 });
const tokens = texts.reduce((n, t) => n + r3.prepare(t).ids.length, 0);

console.log(`SearchR3.encode of ${nTexts} documents (${tokens} tokens with their prompts) on ${values.shape ?? source} ` +
  `(${values.shape ? `random weights, seed ${RANDOM_SEED}` : "its weights"}), ${info.description || info.vendor}; ` +
  `kernels ${Object.entries(model.kernelChoice).map(([slot, v]) => `${slot}=${v}`).join(", ")}; median of ${runs} after a warm-up\n`);
console.log("| batch | seconds | texts/s | tokens/s | vs batch 1 | max abs diff vs batch 1 |");
console.log("| ---: | ---: | ---: | ---: | ---: | ---: |");
let single: { seconds: number; embeddings: Float32Array[] } | undefined;
for (const batchSize of batches) {
  let embeddings = await r3.encode(texts, { batchSize });
  const samples: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    embeddings = await r3.encode(texts, { batchSize });
    samples.push((performance.now() - t0) / 1000);
  }
  const seconds = median(samples);
  if (batchSize === 1) single = { seconds, embeddings };
  // Batched embeddings must be the same texts' embeddings: a guard against measuring something else.
  const diff = single ? Math.max(...embeddings.map((e, i) => Math.max(...e.map((x, j) => Math.abs(x - single!.embeddings[i][j]))))) : NaN;
  console.log(`| ${batchSize} | ${seconds.toFixed(3)} | ${(nTexts / seconds).toFixed(2)} | ${(tokens / seconds).toFixed(1)} | ` +
    `${single ? (single.seconds / seconds).toFixed(2) : "-"} | ${Number.isNaN(diff) ? "-" : diff.toExponential(1)} |`);
}
r3.destroy();
