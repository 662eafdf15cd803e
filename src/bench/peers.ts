// Other engines run by `r3gpu bench --peer` on the same machine, adapter, weights and prompt as the bench,
// and their figures beside r3gpu's. The only peer so far is llama.cpp (src/llamacpp/peer.ts), on its
// Vulkan backend (the adapter r3gpu uses) and on its CPU backend.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { runLlamaCppPeer, type LlamaCppPeerResult } from "../llamacpp/peer.ts";
import { GGUF_DTYPE_OF, type GgufDType } from "../llamacpp/export.ts";
import { exportGgufFile, type GgufSource } from "../llamacpp/export-file.ts";
import type { Qwen2Config } from "../model/config.ts";
import type { WeightMode } from "../model/quant.ts";
import { isQwen25Shape } from "../model/shapes.ts";
import { promptIds, RANDOM_SEED, type DecodeFigures, type PrefillFigures } from "./model.ts";

export const PEERS = ["llama.cpp"] as const;
export type PeerName = (typeof PEERS)[number];

export function isPeerName(name: string): name is PeerName {
  return (PEERS as readonly string[]).includes(name);
}

/**
 * Default time limit of one peer run, loading and warm-up included. llama.cpp's first Vulkan run on a machine
 * compiles its shaders (minutes on lavapipe; Mesa caches them on disk afterwards).
 */
export const PEER_TIMEOUT_S = { vulkan: 600, cpu: 300 };

/** Exported weights are kept here between runs: exporting the 1.5B shape takes about 25 s here and writes 3 GB. */
export const GGUF_CACHE_DIR = join(tmpdir(), "r3gpu-gguf");
// The peer's GGUF type is that of r3gpu's weights in the figures it is set beside (GGUF_DTYPE_OF): F16 for bf16,
// export-gguf's default, the same 2 bytes per weight as r3gpu's BF16, so the same bytes streamed per token, in a
// type every llama.cpp backend computes in; Q8_0 and Q4_0 for q8 and q4, the same quantized values.

export interface PeerFigures {
  backend: LlamaCppPeerResult["backend"];
  device: string | null;
  gguf: string;
  /** The bench's first prompt (the same token ids r3gpu prefilled), and the decode steps after it. */
  prompt_tokens: number;
  decode_steps: number;
  /** Null where the run did not get that far (timed out or failed). */
  prefill_tok_s: number | null;
  /** The mean rate over the steps completed (r3gpu's figure is the median step). */
  decode_tok_s: number | null;
  load_s: number | null;
  /** The unmeasured run before the measured one: shader compilation on Vulkan. */
  warmup_s: number | null;
  timed_out: boolean;
  error?: string;
  /** When the run started: peers run after r3gpu's measurements, under whatever load the machine has then. */
  load_average: number[];
  /** r3gpu's figures at the same prompt and decode context, and r3gpu's rate over the peer's (> 1: r3gpu is faster). */
  r3gpu_prefill_tok_s: number;
  r3gpu_decode_tok_s: number;
  ratio_prefill: number | null;
  ratio_decode: number | null;
}

/** Per backend, per shape. */
export interface PeerReports {
  llamacpp_vulkan?: Record<string, PeerFigures>;
  llamacpp_cpu?: Record<string, PeerFigures>;
}

/** A shape as r3gpu measured it: the prefill of the bench's first prompt and the decode after it. */
export interface PeerTarget {
  shape: string;
  /** r3gpu's weights in the figures below: the peer's GGUF holds the same (F16 for bf16, Q8_0/Q4_0 for q8/q4). */
  quant: WeightMode;
  config: Qwen2Config;
  prefill: PrefillFigures;
  decode: DecodeFigures;
}

export interface PeerOptions {
  decodeSteps: number;
  /** One limit for every run; by default PEER_TIMEOUT_S per backend. */
  timeoutS?: number;
  log: (line: string) => void;
}

/**
 * Where the GGUF of `shape` lives in the cache. A random shape is named by its shape, seed and dtype; a folder
 * by its name, a hash of its path and its newest file time, so that changed weights are exported again.
 */
function ggufPath(shape: string, dtype: GgufDType): { path: string; source: GgufSource } {
  if (isQwen25Shape(shape)) {
    return { path: join(GGUF_CACHE_DIR, `${shape}-seed${RANDOM_SEED}-${dtype}.gguf`), source: { shape, seed: RANDOM_SEED } };
  }
  const dir = resolve(shape);
  const hash = createHash("sha256").update(dir).digest("hex").slice(0, 12);
  const mtime = Math.max(...readdirSync(dir).map((f) => Math.floor(statSync(join(dir, f)).mtimeMs)));
  return { path: join(GGUF_CACHE_DIR, `${basename(dir)}-${hash}-${mtime}-${dtype}.gguf`), source: { modelDir: dir } };
}

/** The cached GGUF of `shape`, exported first if absent (exportGgufFile renames a file into place only when complete). */
async function cachedGguf(shape: string, dtype: GgufDType, log: (line: string) => void): Promise<string> {
  const { path, source } = ggufPath(shape, dtype);
  if (existsSync(path)) return path;
  mkdirSync(GGUF_CACHE_DIR, { recursive: true });
  log(`${shape}: exporting the weights as GGUF ${dtype} to ${path}`);
  const result = await exportGgufFile(source, path, { dtype });
  for (const w of result.warnings) log(`${shape}: GGUF export: ${w}`);
  return path;
}

function rate(x: number | null): string {
  return x === null ? "-" : x.toFixed(2);
}

async function llamaCpp(target: PeerTarget, gguf: string, gpu: "vulkan" | false, opts: PeerOptions): Promise<PeerFigures> {
  const backend = gpu || "cpu";
  const timeoutS = opts.timeoutS ?? PEER_TIMEOUT_S[backend];
  const prompt = promptIds(target.prefill.tokens, target.config);
  opts.log(`${target.shape}: llama.cpp ${backend}, prompt ${prompt.length} tokens and ${opts.decodeSteps} decode steps ` +
    `after a warm-up run (time limit ${timeoutS} s)`);
  const load_average = loadavg();
  const run = await runLlamaCppPeer({ gguf, gpu, promptTokens: prompt, decodeTokens: opts.decodeSteps, timeoutMs: timeoutS * 1000 });
  opts.log(`${target.shape}: llama.cpp ${backend}: prefill ${rate(run.prefill_tok_s)} tok/s, decode ${rate(run.decode_tok_s)} tok/s` +
    `${run.timed_out ? ", timed out" : ""}${run.error ? `, failed: ${run.error}` : ""}`);
  const ratio = (ours: number, theirs: number | null) => (theirs === null ? null : ours / theirs);
  return {
    backend: run.backend, device: run.device, gguf, prompt_tokens: run.prompt_tokens, decode_steps: run.decode_steps,
    prefill_tok_s: run.prefill_tok_s, decode_tok_s: run.decode_tok_s, load_s: run.load_s, warmup_s: run.warmup_s,
    timed_out: run.timed_out, ...(run.error === undefined ? {} : { error: run.error }), load_average,
    r3gpu_prefill_tok_s: target.prefill.tok_s, r3gpu_decode_tok_s: target.decode.tok_s,
    ratio_prefill: ratio(target.prefill.tok_s, run.prefill_tok_s), ratio_decode: ratio(target.decode.tok_s, run.decode_tok_s),
  };
}

/** Runs llama.cpp on each shape, one run at a time (runs side by side would share the machine's cores). */
export async function measureLlamaCpp(targets: PeerTarget[], opts: PeerOptions): Promise<Required<PeerReports>> {
  const vulkan: Record<string, PeerFigures> = {};
  const cpu: Record<string, PeerFigures> = {};
  for (const target of targets) {
    const gguf = await cachedGguf(target.shape, GGUF_DTYPE_OF[target.quant], opts.log);
    vulkan[target.shape] = await llamaCpp(target, gguf, "vulkan", opts);
    cpu[target.shape] = await llamaCpp(target, gguf, false, opts);
  }
  return { llamacpp_vulkan: vulkan, llamacpp_cpu: cpu };
}
