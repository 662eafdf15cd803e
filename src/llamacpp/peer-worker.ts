// Child process of runLlamaCppPeer (peer.ts): loads a GGUF model with node-llama-cpp, evaluates
// the prompt and decodes greedily, and reports each step over IPC as it happens. It runs in its own process
// because a native evaluation cannot be interrupted: when the parent's time limit passes, it kills this
// process and keeps whatever was reported.
import { pathToFileURL } from "node:url";

/**
 * The part of node-llama-cpp's API used here. The package is imported by path from peers/llama.cpp (see
 * peer.ts), so r3gpu builds without it; these are its own names and shapes, narrowed to what this file calls.
 */
interface NodeLlamaCpp {
  LlamaLogLevel: { error: string };
  getLlama(o: { gpu: "vulkan" | false; build: "never"; skipDownload: boolean; usePrebuiltBinaries: boolean;
    maxThreads: number; logLevel: string }): Promise<Llama>;
}
interface Llama {
  gpu: string | false;
  getGpuDeviceNames(): Promise<string[]>;
  loadModel(o: { modelPath: string; gpuLayers: "max" | number }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(o: { contextSize: number; batchSize: number; threads: number;
    experimentalKvCacheKeyType: string; experimentalKvCacheValueType: string }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface LlamaContext {
  currentThreads: number;
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
interface LlamaSequence {
  evaluate(tokens: number[], o: { temperature: number; yieldEogToken: boolean }): AsyncIterable<number>;
  clearHistory(): Promise<void>;
}

export interface WorkerRequest {
  /** peers/llama.cpp/index.js, which re-exports node-llama-cpp from that folder's own node_modules. */
  entry: string;
  gguf: string;
  gpu: "vulkan" | false;
  prompt: number[];
  decodeTokens: number;
  threads: number;
  kvCacheType: "F16" | "F32";
  warmup: boolean;
}

export type WorkerMessage =
  | { type: "loaded"; backend: string; device: string; loadMs: number }
  | { type: "warm"; ms: number }
  | { type: "start"; at: number }
  | { type: "token"; token: number; at: number }
  | { type: "done" }
  | { type: "error"; message: string };

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve, reject) => process.send!(m, undefined, {}, (e) => (e ? reject(e) : resolve())));
}

async function run(req: WorkerRequest): Promise<void> {
  const t0 = performance.now();
  const { getLlama, LlamaLogLevel } = (await import(pathToFileURL(req.entry).href)) as NodeLlamaCpp;
  const llama = await getLlama({ gpu: req.gpu, build: "never", skipDownload: true, usePrebuiltBinaries: true,
    maxThreads: req.threads, logLevel: LlamaLogLevel.error });
  if (llama.gpu !== req.gpu) throw new Error(`asked for backend ${req.gpu || "cpu"}, node-llama-cpp loaded ${llama.gpu || "cpu"}`);
  const model = await llama.loadModel({ modelPath: req.gguf, gpuLayers: req.gpu ? "max" : 0 });
  const tokens = req.prompt.length + req.decodeTokens + 1;
  const context = await model.createContext({
    contextSize: tokens,
    // One batch for the whole prompt, so prefill is a single evaluation as in r3gpu.
    batchSize: req.prompt.length,
    threads: req.threads,
    experimentalKvCacheKeyType: req.kvCacheType,
    experimentalKvCacheValueType: req.kvCacheType,
  });
  const device = req.gpu
    ? (await llama.getGpuDeviceNames()).join(", ")
    : `CPU, ${context.currentThreads} thread${context.currentThreads === 1 ? "" : "s"}`;
  await send({ type: "loaded", backend: req.gpu || "cpu", device, loadMs: performance.now() - t0 });

  const sequence = context.getSequence();
  const greedy = { temperature: 0, yieldEogToken: true };
  if (req.warmup) {
    // The same prompt and one decode step compile every GPU pipeline the measured run needs (minutes on
    // lavapipe the first time; Mesa caches them on disk), so the figures below are throughput only.
    const w0 = performance.now();
    let steps = 0;
    for await (const _ of sequence.evaluate(req.prompt, greedy)) if (++steps > 1) break;
    await sequence.clearHistory();
    await send({ type: "warm", ms: performance.now() - w0 });
  }
  let produced = 0;
  await send({ type: "start", at: performance.now() });
  // temperature 0 is argmax over all logits; end-of-generation tokens are yielded like any other.
  for await (const token of sequence.evaluate(req.prompt, greedy)) {
    await send({ type: "token", token, at: performance.now() });
    if (++produced > req.decodeTokens) break;
  }
  await send({ type: "done" });
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

process.once("message", (req: WorkerRequest) => {
  run(req).then(
    () => process.disconnect(),
    async (e: unknown) => {
      await send({ type: "error", message: e instanceof Error ? e.message : String(e) }).catch(() => {});
      process.disconnect();
    },
  );
});
