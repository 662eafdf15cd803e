// r3gpu's public API for Node. Runtime-neutral modules are re-exported here; nodeGpu/nodeModelDir are
// the Node-specific entry points (Deno and browsers supply their own device and ModelDir).
export { nodeGpu } from "./gpu/node.ts";
export { nodeModelDir, openNodeFile } from "./io/node.ts";
export type { ByteSource, ModelDir } from "./io/files.ts";
export { requestEngineDevice, describeAdapter, type GpuInfo } from "./gpu/device.ts";
export { Qwen2Model, type LoadOptions, type PrefillOptions, type PrefillResult, type CaptureName } from "./model/qwen2.ts";
export { loadConfig, parseConfig, type Qwen2Config } from "./model/config.ts";
export { openSafetensors, openModelWeights, readTensor, type TensorInfo } from "./model/safetensors.ts";
export { runGoldenCheck, firstDivergence, type GoldenReport } from "./check/golden.ts";
export { TextTokenizer, StreamDecoder } from "./text/tokenizer.ts";
export { ChatTemplate, renderChat } from "./text/chat.ts";
export { SearchR3, l2normalize, cosineSimilarity, cosineMatrix, cdist, type SearchR3Options, type Reasoning } from "./search/searchr3.ts";
export { readCorpus, chunkText, documentText, type Document, type Chunk } from "./search/corpus.ts";
export {
  SearchIndex, indexCorpus, searchQuery, indexSettings, resolveChunking, modelIdentity, searchR3Options, ANN_MIN_ROWS,
  type IndexSettings, type Hit, type IndexReport, type QueryOptions, type QueryResult,
} from "./search/index.ts";
export { evaluateRun, rankDocuments, ndcgAt, recallAt, mrrAt, BEIR_CUTOFFS, type Qrels, type Run, type Evaluation } from "./search/metrics.ts";
export { readBeir, parseQrels, runQueries, type BeirDataset, type BeirQuery } from "./search/eval.ts";
export { perQuerySvg } from "./search/plot.ts";
