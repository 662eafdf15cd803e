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
