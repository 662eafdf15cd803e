// r3gpu's public API. Everything the CLI, the server and the browser page use is exported here; nodeGpu and
// nodeModelDir are the Node entry points (Deno and browsers supply their own device, src/gpu/web.ts, and
// ModelDir, src/io/deno.ts and src/io/browser.ts).

// ---- GPU device and files
/** A WebGPU device under Node (Dawn), with the adapter's limits at their maximum. */
export { nodeGpu, type NodeGpu } from "./gpu/node.ts";
/** A device from any runtime's GPUAdapter, and the adapter's description. */
export { requestEngineDevice, describeAdapter, type GpuInfo } from "./gpu/device.ts";
/** A model folder on disk, read in slices; one file as a ByteSource. */
export { nodeModelDir, openNodeFile } from "./io/node.ts";
/** What the engine reads files through (Node, Deno and browsers each provide one). */
export type { ByteSource, ModelDir } from "./io/files.ts";

// ---- The model
/** A Qwen2 model on the GPU: load, prefill, decode steps, batched forward over KV-cache slots, captures, destroy. */
export {
  Qwen2Model, type LoadOptions, type PrefillOptions, type PrefillResult, type CaptureName,
  type SequenceTokens, type ForwardOptions, type SequenceResult,
} from "./model/qwen2.ts";
/** A model folder's config.json and generation_config.json, read once. */
export { openModelFolder, type ModelFolder } from "./model/folder.ts";
/** config.json as a checked Qwen2Config. */
export { parseConfig, type Qwen2Config } from "./model/config.ts";
/** The published Qwen2.5 shapes, for random-weight models at real sizes. */
export { QWEN25_SHAPES, type Qwen25Shape } from "./model/shapes.ts";
/** Safetensors files: headers, tensors, streaming. */
export { openSafetensors, openModelWeights, readTensor, type TensorInfo } from "./model/safetensors.ts";
/** The golden-value check that `r3gpu check` runs. */
export { runGoldenCheck, firstDivergence, TENSOR_TOLERANCE, type GoldenReport } from "./check/golden.ts";

// ---- Text
/** The tokenizer (Hugging Face's tokenizers) and a streaming decoder that never splits a character. */
export { TextTokenizer, StreamDecoder } from "./text/tokenizer.ts";
/** The chat template (Jinja, from tokenizer_config.json). */
export { ChatTemplate, renderChat, type ChatMessage } from "./text/chat.ts";
/** A model with its tokenizer, chat template and generation defaults. */
export { Engine, generationDefaults, type EngineLoadOptions } from "./text/engine.ts";
/** Text generation (greedy or sampled, stop ids and strings), whole or streamed, one prompt or many batched. */
export {
  generate, generateStream, generateBatch, generateBatchStream,
  type GenerateOptions, type GenerateResult, type Prompt, type StopReason, type BatchChunk,
} from "./text/generate.ts";
/** HF's sampling maths: repetition penalty, temperature, top-k, top-p. */
export { samplingDistribution, drawToken, applyRepetitionPenalty, argmax, type SamplingParams } from "./text/sampling.ts";

// ---- Search-R3 embeddings and search
/** Search-R3: reasoning about queries, embeddings at <|embed_token|>. */
export { SearchR3, DEFAULT_BATCH_SIZE, type SearchR3Options, type SearchR3LoadOptions, type Reasoning, type Truncation } from "./search/searchr3.ts";
/** Vector similarity, as the reference's helpers. */
export { l2normalize, cosineSimilarity, cosineMatrix, cdist } from "./search/similarity.ts";
/** Corpora: folders, JSONL, text and BEIR files as documents, and token chunks of them. */
export {
  readCorpus, chunkText, documentText, DEFAULT_INCLUDE, type Document, type Chunk, type CorpusOptions, type SkippedFile,
} from "./search/corpus.ts";
/** A LanceDB index of chunk embeddings (and a full-text index of their texts) and its vector, full-text and hybrid search. */
export { SearchIndex, ANN_MIN_ROWS, HYBRID_DEPTH, type Hit } from "./search/store.ts";
/** Reciprocal rank fusion of rankings, as hybrid search uses it. */
export { reciprocalRankFusion, RRF_K } from "./search/fusion.ts";
/** What an index's embeddings depend on (model identity, prompts, chunking). */
export { indexSettings, resolveChunking, searchR3Options, type IndexSettings } from "./search/settings.ts";
/** A model recognised by content: config.json, tokenizer files, weights. */
export { modelIdentity, identityDiff, type ModelIdentity } from "./search/model-identity.ts";
/** One indexing run per index at a time. */
export { IndexLock, IndexLockedError, lockHolder, type LockHolder } from "./search/lock.ts";
/** Building an index from a corpus, resumably. */
export { indexCorpus, type IndexReport, type IndexOptions } from "./search/indexing.ts";
/** One query against an index, with or without reasoning. */
export { searchQuery, type QueryOptions, type QueryResult } from "./search/query.ts";
/** trec_eval's measures and BEIR evaluation. */
export { evaluateRun, rankDocuments, ndcgAt, recallAt, mrrAt, BEIR_CUTOFFS, type Qrels, type Run, type Evaluation } from "./search/metrics.ts";
export { readBeir, parseQrels, runQueries, type BeirDataset, type BeirQuery } from "./search/eval.ts";
/** A per-query bar chart as SVG. */
export { perQuerySvg } from "./search/plot.ts";

// ---- Serving and downloading
/** The OpenAI-compatible HTTP server of `r3gpu serve`. */
export { startServer, type ServerOptions, type RunningServer } from "./server/server.ts";
/** Downloading a model repository from the Hugging Face hub (resumable, checked). */
export { downloadModel, type HubDownloadOptions, type HubDownloadReport } from "./hub/download.ts";
