// Every r3gpu command, declared once: its arguments, flags (a shared flag is declared once and reused), help and
// example. Parsing, validation, --help and usage errors come from these declarations (args.ts); each command's
// implementation is imported only when it runs, so that --help and usage errors do not load the GPU or LanceDB.
// Adding a flag to a command is one line in its `flags`; its value then arrives typed in `args.flags`.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PEERS } from "../bench/peers.ts";
import { GGUF_DTYPES } from "../llamacpp/export.ts";
import { WEIGHT_MODES } from "../model/quant.ts";
import { OP_SLOTS, TUNED_CONTEXT } from "../ops/variant.ts";
import { isQwen25Shape, QWEN25_SHAPES, type Qwen25Shape } from "../model/shapes.ts";
import { DEFAULT_INCLUDE } from "../search/corpus.ts";
import { DEFAULT_BATCH_SIZE, DEFAULT_REASONING_TOKENS } from "../search/searchr3.ts";
import {
  boolean, choice, choiceList, defineCommand, integer, integerList, number, repeatable, required, text, UsageError, valueFlag,
  type Args, type ArgsOf, type CommandSpec,
} from "./args.ts";

const SHAPES = Object.keys(QWEN25_SHAPES) as Qwen25Shape[];

const MODEL_DIR = {
  name: "MODEL_DIR", kind: "model", help: "a Hugging Face Qwen2 model folder (config.json, model.safetensors, tokenizer files)",
} as const;
const SEARCH_MODEL_DIR = {
  name: "MODEL_DIR", kind: "model", help: "a Search-R3 model folder: a Qwen2 model whose tokenizer adds <|embed_token|>",
} as const;

// ---- shared flags ----

const MAX_LENGTH = integer("the longest token sequence that an embedding reads, its prompt included", { min: 2, default: 1024 });
const NO_REASONING = boolean("embed the query as it is, much faster than letting the model reason about it first");
// At least 1, as the server's max_new_tokens (none at all is --no-reasoning); positions are 32-bit on the GPU, so no
// generation is longer than 2^32 - 1.
const MAX_NEW_TOKENS = integer(
  "the most tokens the model writes while reasoning about a query; where it stops without writing <|embed_token|>, " +
  "\"The final embedding is: <|embed_token|>\" is appended, always within --max-length",
  { min: 1, max: 2 ** 32 - 1, default: DEFAULT_REASONING_TOKENS },
);
const DB = text("the LanceDB index folder", { metavar: "DB_DIR" });

/**
 * How a command that loads a model stores its weights (quantized on the GPU at load, or as the files have them) and
 * chooses its kernel variants (src/tune/): measured at load unless told.
 */
const KERNELS = {
  quant: choice(WEIGHT_MODES, "the weight matrices as stored (bf16), or quantized on the GPU at load in groups of 32 " +
    "with an f16 scale: q8 the MLP and the LM head int8, q4 the MLP int4 (but the first layers') and the rest int8; smaller, less accurate " +
    "(README: Quantized weights)", { default: "bf16" }),
  kernels: text(`force kernel variants, SLOT=VARIANT,... (slots ${OP_SLOTS.join(", ")}; \`r3gpu tune\` lists the ` +
    "variants); R3GPU_KERNELS does the same, the flag winning", { metavar: "LIST" }),
  "no-tune": boolean("use the static kernel defaults for the adapter's class instead of measuring the variants at load"),
  precision: choice(["f32", "f16"], "f16 lets variants that compute in half precision compete, at their own tolerance", { default: "f32" }),
};

/** How many texts one forward pass embeds (KV-cache slots of --max-length tokens each, so memory grows with it). */
const batchSize = (help: string, fallback: number) => integer(help, { min: 1, max: 64, default: fallback });

const INDEXING = {
  "max-length": MAX_LENGTH,
  "chunk-tokens": integer("tokens per chunk of a document", { min: 1, defaultText: "what --max-length leaves beside the document prompt" }),
  overlap: integer("tokens that consecutive chunks share", { min: 0, defaultText: "1/8 of --chunk-tokens" }),
  batch: integer("chunks per commit: documents are written to the index whole, in commits of at least N chunks, so a " +
    "run killed outright (SIGKILL, a crash) loses at most N chunks' work and Ctrl-C or SIGTERM none; larger means " +
    "fewer, bigger commits (not the same as --batch-size)", { min: 1, default: 64 }),
  "batch-size": batchSize("chunks embedded together in one batched forward pass (of consecutive documents); results " +
    "equal those of 1 within the golden tolerance, and each one more holds another --max-length tokens of KV cache", DEFAULT_BATCH_SIZE),
  "document-system": text("the system prompt of documents", { defaultText: "\"Please represent the document.\"" }),
  "query-system": text("the system prompt of queries", { defaultText: "\"Please represent user queries.\"" }),
  "progress-every": number("when stderr is not a terminal (a log), a progress line (documents, tokens/s, time left) " +
    "every this many seconds", { min: 0, above: true, default: 10, metavar: "SECONDS" }),
};

const QUERY = {
  "no-reasoning": NO_REASONING,
  "max-new-tokens": { ...MAX_NEW_TOKENS, conflicts: ["no-reasoning"] },
  exact: boolean("scan every chunk instead of querying the ANN index"),
  hybrid: boolean("fuse the vector ranking with a full-text (BM25) ranking of the query's words, by reciprocal rank"),
};

const SAMPLING = {
  "max-tokens": integer("the most tokens of a reply", { min: 1, defaultText: "generation_config.json's max_new_tokens, else 256" }),
  temperature: number("0 decodes greedily, above 0 samples", { min: 0 }),
  "top-k": integer("sample from the K likeliest tokens only; 0 keeps all", { min: 0, metavar: "K", defaultText: "50" }),
  "top-p": number("sample from the likeliest tokens whose probabilities add up to P", { min: 0, max: 1, above: true, metavar: "P", defaultText: "1" }),
  "repetition-penalty": number("above 1 makes tokens already in the conversation less likely", { min: 0, above: true, metavar: "R", defaultText: "1" }),
  seed: integer("the sampling seed, for repeatable replies", { min: 0, max: 2 ** 32 - 1, metavar: "S", defaultText: "random" }),
};

// ---- the commands ----

export const CHECK = defineCommand({
  name: "check",
  summary: "run the model on MODEL_DIR/golden.json and compare every tensor with the reference",
  notes: "Prints the max abs and relative error per tensor, top-5 and greedy agreement; exits 1 when anything is out of tolerance. " +
    "With --quant q8|q4 it also prints final_norm_hidden's cosine to the golden at every position, top-1, top-5 and greedy " +
    "agreement, and for a folder with search-golden.json the Search-R3 embeddings' cosine and the documents' ranking; it " +
    "exits 1 when a cosine is under 0.999 (q8) or 0.98 (q4).",
  positionals: [MODEL_DIR],
  flags: {
    ...KERNELS,
    "all-variants": {
      ...boolean("check with every kernel variant this adapter supports instead, in the few loads that run them all " +
        "(each at its precision's tolerance), one verdict line per load"),
      conflicts: ["kernels", "no-tune", "precision", "quant"],
    },
  },
  examples: ["check models/tiny-qwen2", "check models/tiny-qwen2 --all-variants", "check models/tiny-qwen2 --quant q8"],
});

export const DUMP = defineCommand({
  name: "dump",
  summary: "print final-norm hidden states, the top-5 last logits and greedy tokens of token ids, one JSON line per --ids",
  notes: "Every --ids sequence runs in one batch (packed prefill, then their greedy tokens decoded together), each in " +
    "its own KV-cache slot; the lines come in the order of the --ids, which errors number from 0 (\"sequence 0\" is " +
    "the first --ids).",
  positionals: [MODEL_DIR],
  flags: {
    ...KERNELS,
    ids: required(repeatable(integerList("a prompt's token ids; repeat it for more sequences", { min: 0, item: "token id", metavar: "ID,ID,..." }))),
    "new-tokens": integer("greedy tokens to generate after each prompt", { min: 0, default: 0 }),
  },
  examples: ["dump models/tiny-qwen2 --ids 9707,11,1879 --new-tokens 4", "dump models/tiny-qwen2 --ids 9707,11,1879 --ids 40,1079"],
});

export const EXPORT_GGUF = defineCommand({
  name: "export-gguf",
  summary: "write a GGUF file for llama.cpp: a model folder, or the seeded random weights of a published shape",
  notes: "Matrices are written in --dtype, norms and biases in f32.",
  positionals: [{ ...MODEL_DIR, unless: "shape" }, { name: "OUT.gguf", help: "the file to write" }],
  flags: {
    shape: choice(SHAPES, "a Qwen2.5 shape, with seeded random weights, instead of MODEL_DIR"),
    seed: { ...integer("the seed of --shape's weights", { min: 0, max: 2 ** 32 - 1, default: 1 }), requires: ["shape"] },
    dtype: choice(GGUF_DTYPES, "the type of the matrices; q8_0 and q4_0 are r3gpu's --quant q8 and q4 (q4_0: the MLP Q4_0 but the first layers', the rest Q8_0)", { default: "f16" }),
  },
  examples: ["export-gguf models/tiny-qwen2 /tmp/tiny.gguf", "export-gguf --shape qwen2.5-0.5b /tmp/qwen2.5-0.5b.gguf --dtype bf16"],
});

export const SERVE = defineCommand({
  name: "serve",
  summary: "an OpenAI-compatible HTTP server: /v1/embeddings, /v1/chat/completions, /v1/models, /health, /search with --db",
  notes: "Runs until SIGTERM or Ctrl-C, then finishes the requests in flight; a second signal exits at once.",
  positionals: [MODEL_DIR],
  flags: {
    ...KERNELS,
    db: text("answer /search from this index (built with `r3gpu index`)", { metavar: "DB_DIR" }),
    host: text("the address to listen on; 127.0.0.1 lets only this machine connect", { default: "127.0.0.1", metavar: "HOST" }),
    port: integer("the port; 0 picks a free one", { min: 0, max: 65535, default: 8080 }),
    "api-key": text("every route but /health then needs `Authorization: Bearer KEY` (better: the R3GPU_API_KEY variable, " +
      "which `ps` does not show)", { metavar: "KEY" }),
    "model-id": text("the model's name in the API", { metavar: "NAME", defaultText: "MODEL_DIR's folder name" }),
    "max-length": MAX_LENGTH,
    context: integer("the KV cache, prompt plus completion, in tokens; at least --max-length", { min: 2, defaultText: "4096" }),
    truncate: boolean("cut embedding inputs longer than --max-length instead of refusing them"),
    "max-queue": integer("requests that may wait while one runs; more get 503", { min: 0, default: 64 }),
    "max-inputs": integer("strings per embeddings request", { min: 1, default: 256 }),
    "max-body": integer("the largest request body", { min: 1, default: 4 << 20, metavar: "BYTES" }),
    "max-new-tokens": MAX_NEW_TOKENS,
    "batch-size": integer("sequences on the GPU at once: chats decode together, one KV-cache slot of --context tokens " +
      "each (one slot stays for embeddings)", { min: 1, max: 64, default: 4 }),
    "max-batch-tokens": integer("prompt tokens of concurrent embedding requests run together", { min: 1, default: 4096 }),
    quiet: boolean("leave out the line logged per request"),
  },
  examples: ["serve models/tiny-qwen2 --port 8080"],
});

/** A benchmark shape's name, or a model folder with a config.json. */
function shapeOrModel(value: string, flag: string): string {
  if (isQwen25Shape(value) || existsSync(join(value, "config.json"))) return value;
  throw new UsageError(`${flag} must be one of ${SHAPES.join(", ")} or a model folder with a config.json, got "${value}"`);
}

export const BENCH = defineCommand({
  name: "bench",
  summary: "the adapter's roofline, per-kernel and end-to-end figures of a model (see bench/NOTES.md)",
  positionals: [],
  flags: {
    ...KERNELS,
    quant: choiceList(WEIGHT_MODES, "the weight modes to measure, each loaded in turn (see --quant of the other commands)", { default: ["bf16"] }),
    shape: repeatable(valueFlag(`a shape with random weights (${SHAPES.join(", ")}) or a model folder`,
      { metavar: "S|MODEL_DIR" }, shapeOrModel), ["qwen2.5-0.5b"]),
    quick: boolean("fewer and shorter measurements"),
    json: text("also write the report as JSON to FILE", { metavar: "FILE" }),
    check: boolean("exit 1 when a target is missed"),
    peer: repeatable(choice(PEERS, "run the same model in another engine beside r3gpu (in GGUF F16, or Q8_0/Q4_0 when the first --quant mode is q8/q4)")),
    "peer-timeout": { ...number("the longest a peer may run, in seconds", { min: 0, above: true, metavar: "S" }), requires: ["peer"] },
    batch: integerList("also measure batched decode and packed prefill at these batch sizes", { min: 1, item: "batch size", metavar: "N,N,..." }),
  },
  examples: ["bench --quick", "bench --shape models/tiny-qwen2 --quick --json /tmp/bench.json --peer llama.cpp"],
});

export const PROFILE = defineCommand({
  name: "profile",
  summary: "one decode step and one prefill, split by kernel family",
  positionals: [{ ...MODEL_DIR, unless: "shape" }],
  flags: {
    ...KERNELS,
    shape: choice(SHAPES, "a Qwen2.5 shape with random weights, instead of MODEL_DIR"),
    tokens: integer("the prompt tokens of the prefill", { min: 1, default: 128 }),
  },
  examples: ["profile models/tiny-qwen2 --tokens 64", "profile --shape qwen2.5-0.5b"],
});

export const TUNE = defineCommand({
  name: "tune",
  summary: "the kernel workbench: every variant of every op at a model's shapes, timed, checked, the fastest chosen",
  notes: "Prints time, GB/s, GFLOP/s and the fraction of the roofline (measured in the same run) of each variant, " +
    "whether it is correct (against today's kernels) and chosen; the choice goes to the tuning cache, which later " +
    "loads of the same model shape on this adapter use. --kernel adds a kernel of yours (WGSL with the same " +
    "bindings and uniforms as the slot's built-in family; see the README's \"Writing a kernel\"), checked against " +
    "the golden values too.",
  positionals: [{ ...MODEL_DIR, unless: "shape" }],
  flags: {
    shape: choice(SHAPES, "a Qwen2.5 shape with random weights, instead of MODEL_DIR"),
    json: text("also write the table as JSON to FILE", { metavar: "FILE" }),
    kernel: repeatable(text("a kernel of yours for a slot, SLOT=FILE.wgsl (its name: the file's, without .wgsl)", { metavar: "SLOT=FILE" })),
    precision: KERNELS.precision,
    batch: integer("decode steps of this many sequences are measured (the decode slot's rows)", { min: 1, max: 16, default: 1 }),
    context: integer(`the KV cache in tokens (decode attention is measured at up to ${TUNED_CONTEXT} keys)`, { min: 16, default: TUNED_CONTEXT }),
  },
  examples: ["tune --shape qwen2.5-0.5b --json /tmp/tune.json", "tune models/tiny-qwen2 --kernel linear.decode=examples/kernels/linear_naive.wgsl"],
});

export const INDEX = defineCommand({
  name: "index",
  summary: "embed a corpus into a LanceDB index, in chunks; resumable, follows the corpus as it changes",
  notes: "CORPUS is a folder (its files that --include matches, default .txt and .md, at any depth; links are not " +
    "followed), a .jsonl file of {\"id\", \"text\", \"title\"?}, a BEIR folder (corpus.jsonl) or one text file " +
    "(one document). Run again, it embeds only new and changed documents and, for a folder, removes those whose " +
    "files are gone. Ctrl-C or SIGTERM stops at the next batch: what is embedded is stored, the run exits 130 " +
    "(143) and the next one resumes. One run at a time per index: a second is refused, naming the first's " +
    "process. An index refuses documents embedded with another model (recognised by content: config.json, " +
    "tokenizer files, weights) or other settings.",
  positionals: [SEARCH_MODEL_DIR, { name: "CORPUS", help: "the documents: a folder, a .jsonl file, a BEIR folder or a text file" }],
  flags: {
    db: required(DB),
    include: repeatable(text("a glob of the folder's files to index, relative to it (`**` any depth); given, it " +
      "replaces the default", { metavar: "GLOB" }), [...DEFAULT_INCLUDE]),
    exclude: repeatable(text("a glob of the folder's files to leave out", { metavar: "GLOB" })),
    prune: boolean("remove the documents that earlier runs read from CORPUS and that it no longer holds (the " +
      "default for a folder; for a .jsonl file only with this flag)"),
    "no-prune": { ...boolean("keep them, even for a folder"), conflicts: ["prune"] },
    ...INDEXING,
    ...KERNELS,
  },
  examples: ["index models/tiny-qwen2 test/fixtures/beir-tiny --db /tmp/tiny-db",
    "index models/tiny-qwen2 docs --db /tmp/docs-db --include '**/*.md' --include '**/*.rst' --exclude 'drafts/**'"],
});

export const SEARCH = defineCommand({
  name: "search",
  summary: "stream the model's reasoning about a question, then print the k best documents of an index",
  positionals: [SEARCH_MODEL_DIR, { name: "QUESTION", help: "what to search for" }],
  flags: {
    ...KERNELS,
    db: required(DB),
    k: integer("how many documents to print", { min: 1, default: 10, short: "k" }),
    json: boolean("print one JSON object instead (the reasoning then streams to stderr)"),
    "batch-size": batchSize("sequences the model is loaded for; a search embeds one query, so more only holds " +
      "KV-cache memory (accepted for scripts that pass index's flags on)", 1),
    ...QUERY,
  },
  examples: ['search models/tiny-qwen2 --db /tmp/tiny-db "meet walk best track?" -k 5',
    'search models/tiny-qwen2 --db /tmp/tiny-db "meet walk best track?" --hybrid --no-reasoning'],
});

export const EVAL = defineCommand({
  name: "eval",
  summary: "index a BEIR dataset, run its queries and print nDCG@10, Recall@100 and MRR@10",
  notes: "--batch-size also sets how many queries are reasoned about and embedded together.",
  positionals: [SEARCH_MODEL_DIR],
  flags: {
    ...KERNELS,
    beir: required(text("the BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv", { metavar: "DIR" })),
    split: text("the qrels split", { default: "test", metavar: "SPLIT" }),
    limit: integer("run only the first N queries", { min: 1, defaultText: "all" }),
    json: text("write {\"metrics\", \"run\"} to FILE, and a plot of per-query nDCG@10 beside it", { metavar: "FILE" }),
    plot: text("write the plot of per-query nDCG@10 here (SVG)", { metavar: "FILE.svg" }),
    db: text("keep the index in DB_DIR", { metavar: "DB_DIR", defaultText: "a temporary folder, removed after" }),
    ...INDEXING,
    ...QUERY,
  },
  examples: ["eval models/tiny-qwen2 --beir test/fixtures/beir-tiny --no-reasoning --json /tmp/eval.json",
    "eval models/tiny-qwen2 --beir test/fixtures/beir-tiny --no-reasoning --hybrid"],
});

export const INFO = defineCommand({
  name: "info",
  summary: "what an index holds: its model, settings, documents, chunks, indices and size on disk",
  positionals: [],
  flags: {
    db: required(DB),
    json: boolean("print one JSON object instead"),
  },
  examples: ["info --db /tmp/tiny-db"],
});

export const CHAT = defineCommand({
  name: "chat",
  summary: "chat with the model, its replies streamed as they are generated",
  notes: "--prompt asks once; otherwise each line of stdin is a turn, until /exit or the end of input. /help lists " +
    "the commands, /clear starts a new conversation. Ctrl-C stops a reply; at the prompt, or a second time, it exits. " +
    "Without the sampling flags generation_config.json decides; --top-k, --top-p or --seed alone samples.",
  positionals: [MODEL_DIR],
  flags: {
    ...KERNELS,
    prompt: text("ask this once, print the reply and exit"),
    system: text("the system prompt"),
    context: integer("the KV cache in tokens; the oldest exchanges are dropped when a conversation outgrows it", { min: 2, default: 4096 }),
    ...SAMPLING,
  },
  examples: ['chat models/tiny-qwen2 --prompt "Hello!" --max-tokens 16', "chat models/tiny-qwen2 --temperature 0.7 --seed 1"],
});

export const EMBED = defineCommand({
  name: "embed",
  summary: "print the Search-R3 embedding of a query or a document as one JSON line; --jsonl: of each line of a file",
  notes: "A query is reasoned about first (streamed to stderr on a terminal) until the model writes <|embed_token|>. " +
    "The JSON holds \"text\", \"reasoning\" (queries), \"emitted_embed_token\" (whether the model wrote " +
    "<|embed_token|> itself), \"stop_reason\", \"truncated\" (whether any text was cut to fit --max-length), " +
    "\"embedding\" (L2-normalized) and \"timings\".\n" +
    "--jsonl reads lines {\"text\": ..., \"kind\": \"document\"|\"query\", \"reasoning\": true|false} (kind " +
    "defaults to document, reasoning to false; blank lines are skipped) and writes one such JSON line per input, in " +
    "input order. Up to --batch-size lines run together, as they arrive (a file fills each batch; lines typed at " +
    "stdin are answered one by one): the queries to reason about reason together, then every text of the batch goes " +
    "through one packed forward pass; the reasoning_s and embed_s of a line are its batch's. A bad line stops the " +
    "command (exit 1) with an error naming the line, after the output of every line before it.",
  positionals: [SEARCH_MODEL_DIR],
  flags: {
    ...KERNELS,
    query: text("the query to embed"),
    doc: text("the document to embed"),
    jsonl: text("embed every JSON line of FILE (- for stdin)", { metavar: "FILE|-" }),
    "batch-size": { ...integer("--jsonl lines embedded together, one KV-cache slot of --max-length tokens each",
      { min: 1, max: 64, default: DEFAULT_BATCH_SIZE }), requires: ["jsonl"] },
    "no-reasoning": { ...NO_REASONING, requires: ["query"] },
    "max-length": MAX_LENGTH,
    "max-new-tokens": { ...MAX_NEW_TOKENS, conflicts: ["doc", "no-reasoning"] },
  },
  oneOf: ["query", "doc", "jsonl"],
  examples: ['embed models/tiny-qwen2 --query "what python library is useful for data analysis?" --max-new-tokens 16',
    'embed models/tiny-qwen2 --doc "The giant panda is a bear species endemic to China."',
    "embed models/tiny-qwen2 --jsonl texts.jsonl --batch-size 16"],
});

export const TOKENIZE = defineCommand({
  name: "tokenize",
  summary: "JSON lines {\"text\"} on stdin to {\"ids\", \"decoded\"} lines on stdout",
  positionals: [{ name: "MODEL_DIR", kind: "folder", help: "a model folder, or a folder of just its tokenizer files" }],
  flags: {},
  examples: ["tokenize models/tiny-qwen2 <<< '{\"text\": \"Hello, world!\"}'"],
});

export const DOWNLOAD = defineCommand({
  name: "download",
  summary: "fetch a model from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN); resumable, checks sizes and hashes",
  positionals: [{ name: "REPO_ID", help: "the repository, such as ytgui/Search-R3.0-Small" }],
  flags: {
    revision: text("the branch, tag or commit", { default: "main", metavar: "REV" }),
    dir: text("the folder to write", { metavar: "DIR", defaultText: "the repository's name" }),
  },
  examples: ["download ytgui/Search-R3.0-Small --dir models/Search-R3.0-Small"],
});

export type CheckArgs = ArgsOf<typeof CHECK>;
export type DumpArgs = ArgsOf<typeof DUMP>;
export type ExportGgufArgs = ArgsOf<typeof EXPORT_GGUF>;
export type ServeArgs = ArgsOf<typeof SERVE>;
export type BenchArgs = ArgsOf<typeof BENCH>;
export type ProfileArgs = ArgsOf<typeof PROFILE>;
export type IndexArgs = ArgsOf<typeof INDEX>;
export type TuneArgs = ArgsOf<typeof TUNE>;
export type SearchArgs = ArgsOf<typeof SEARCH>;
export type EvalArgs = ArgsOf<typeof EVAL>;
export type InfoArgs = ArgsOf<typeof INFO>;
export type ChatArgs = ArgsOf<typeof CHAT>;
export type EmbedArgs = ArgsOf<typeof EMBED>;
export type TokenizeArgs = ArgsOf<typeof TOKENIZE>;
export type DownloadArgs = ArgsOf<typeof DOWNLOAD>;
/** The flags of building an index, which index and eval share. */
export type IndexingFlags = Args<typeof INDEXING>["flags"];
/** The kernel flags of every command that loads a model. */
export type KernelFlags = Args<typeof KERNELS>["flags"];

export interface Command {
  spec: CommandSpec;
  run: (args: Args) => Promise<number>;
}

/** Pairs a declaration with its implementation, which is imported when the command runs. */
function command<S extends CommandSpec<any, any>>(spec: S, run: (args: ArgsOf<S>) => Promise<number>): Command {
  return { spec, run: run as (args: Args) => Promise<number> };
}

/** In the order of the program's help. */
export const COMMANDS: readonly Command[] = [
  command(CHECK, async (a) => (await import("./check.ts")).check(a)),
  command(DUMP, async (a) => (await import("./check.ts")).dump(a)),
  command(EXPORT_GGUF, async (a) => (await import("./gguf.ts")).exportGguf(a)),
  command(SERVE, async (a) => (await import("./serve.ts")).serve(a)),
  command(BENCH, async (a) => (await import("./bench.ts")).bench(a)),
  command(PROFILE, async (a) => (await import("./bench.ts")).profile(a)),
  command(TUNE, async (a) => (await import("./tune.ts")).tune(a)),
  command(INDEX, async (a) => (await import("./search.ts")).index(a)),
  command(SEARCH, async (a) => (await import("./search.ts")).search(a)),
  command(EVAL, async (a) => (await import("./search.ts")).evaluate(a)),
  command(INFO, async (a) => (await import("./info.ts")).info(a)),
  command(CHAT, async (a) => (await import("./chat.ts")).chat(a)),
  command(EMBED, async (a) => (await import("./embed.ts")).embed(a)),
  command(TOKENIZE, async (a) => (await import("./tokenize.ts")).tokenize(a)),
  command(DOWNLOAD, async (a) => (await import("./download.ts")).download(a)),
];
