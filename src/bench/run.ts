// `r3gpu bench`: the adapter's roofline and, per model shape, per-kernel and end-to-end figures, all
// measured in one run on one device, with the ratios that relate them. Everything here is the same on
// any adapter; only how long it takes differs (--quick bounds that).
import { cpus, loadavg, totalmem } from "node:os";
import { createRequire } from "node:module";
import { Kernels } from "../gpu/kernel.ts";
import { describeAdapter } from "../gpu/device.ts";
import type { Qwen2Config } from "../model/config.ts";
import { quantOf, type WeightMode } from "../model/quant.ts";
import type { LoadOptions } from "../model/qwen2.ts";
import type { UploadProgress } from "../model/weights.ts";
import type { KernelChoice } from "../ops/kernel-variants.ts";
import {
  measureBatchedDecode, measureDecode, measurePackedPrefill, measurePrefill, openModel, profileStep,
  type BatchedDecodeFigures, type PackedPrefillFigures,
  type DecodeFigures, type KernelRow, type LoadFigures, type PrefillFigures, type StepProfile,
} from "./model.ts";
import { measureLlamaCpp, type PeerName, type PeerReports } from "./peers.ts";
import { defaultStreamBytes, lastLevelCacheBytes, measureRoofline, type Roofline } from "./roofline.ts";
import { GpuTimer, type MeasureOptions, type TimingMethod } from "../gpu/timer.ts";

/** Prompt lengths and decode contexts of a full run; --quick keeps only the first. */
const PROMPTS = [128, 1024];
/** Batched measurements (`--batch`): decode at this context, and this many documents of about PACKED_LENGTH tokens. */
const BATCH_CONTEXT = 128;
const PACKED_DOCUMENTS = 16;
const PACKED_LENGTH = 100;
/** Targets for `bench --check`. */
export const TARGETS = { decode_vs_floor: 1.2, prefill_fraction_of_peak: 0.25 };

interface BenchMode {
  prompts: number[];
  /** Timed prefills per prompt length; their median is reported. */
  prefillRuns: number;
  decodeSteps: number;
  kernels: MeasureOptions;
  roofline: MeasureOptions;
}

function benchMode(quick: boolean): BenchMode {
  return quick
    ? { prompts: PROMPTS.slice(0, 1), prefillRuns: 1, decodeSteps: 4, kernels: { runs: 1, minSeconds: 0.05 }, roofline: { runs: 3, minSeconds: 0.1 } }
    : { prompts: PROMPTS, prefillRuns: 3, decodeSteps: 16, kernels: { runs: 3, minSeconds: 0.2 }, roofline: { runs: 5, minSeconds: 0.3 } };
}

export interface KernelFigures extends KernelRow {
  /** max(achieved GB/s / read_gbps, achieved GFLOP/s / peak_gflops). */
  roofline_fraction: number;
}

export type StepFigures = Omit<StepProfile, "rows"> & { rows: KernelFigures[] };

export interface DecodeReport extends DecodeFigures {
  /** bytes_per_token / read bandwidth + dispatches_per_token x dispatch cost, and s_per_token over it. */
  floor_s: number;
  vs_floor: number;
}

export interface PrefillReport extends PrefillFigures {
  fraction_of_peak: number;
}

export interface BatchedFigures {
  /** Aggregate decode at each batch size, every sequence at context BATCH_CONTEXT. */
  decode: BatchedDecodeFigures[];
  prefill: PackedPrefillFigures;
}

/** One weight mode's headline figures (`models.<shape>.quant.<mode>`). */
export interface QuantFigures {
  /** GPU bytes of the weight matrices and vectors, and of every buffer the model holds. */
  weight_bytes: number;
  gpu_buffer_bytes: number;
  /** Compulsory bytes of the headline decode step (weights read once, KV cache, activations). */
  bytes_per_token: number;
  decode_tok_s: number;
  prefill_tok_s: number;
  decode_vs_floor: number;
  prefill_fraction_of_peak: number;
  /** This mode's rates over bf16's, when bf16 was measured in the same run. */
  decode_vs_bf16: number | null;
  prefill_vs_bf16: number | null;
  kernel_variants: KernelChoice;
}

/** What one measured load was: the model, its kernels and its memory. */
export interface ModelSetup {
  /** The weight mode of the figures (in a report, the first of --quant; `quant` has every mode measured). */
  quant_mode: WeightMode;
  config: Qwen2Config;
  load: LoadFigures;
  /** The kernel variant of each op slot, and whether it was measured at this load, taken from the tuning cache or fixed. */
  kernel_variants: KernelChoice;
  kernel_variants_from: "measured" | "cache" | "defaults";
  /** Sequences the model was loaded for (KV-cache slots), and the bytes of its KV cache. */
  max_batch: number;
  kv_cache_bytes: number;
  /** With --batch: batched decode and packed prefill. */
  batched?: BatchedFigures;
  /** Bytes of every GPU buffer the model holds (weights, activations, KV cache, parameters). */
  gpu_buffer_bytes: number;
  /** The process's peak resident memory when this model's measurements ended. */
  host_peak_rss_bytes: number;
}

export interface ModelReport extends ModelSetup {
  quant: Partial<Record<WeightMode, QuantFigures>>;
  prefill: PrefillReport[];
  decode: DecodeReport[];
  kernels: { decode: StepFigures; prefill: StepFigures };
  /** Measurements left out of this run, and why. */
  skipped: string[];
  /** The headline figures below come from the longest prompt measured and the decode after it. */
  headline: { prompt_tokens: number; context: number };
  prefill_tok_s: number;
  decode_tok_s: number;
  decode_vs_floor: number;
  prefill_fraction_of_peak: number;
}

export interface AdapterReport {
  vendor: string;
  architecture: string;
  description: string;
  backend: string;
  features: string[];
  /** How kernel times were taken on this adapter. */
  timing: TimingMethod;
}

export interface BenchReport {
  schema: 1;
  date: string;
  command: string;
  quick: boolean;
  host: {
    platform: string;
    cpu: string;
    cores: number;
    memory_bytes: number;
    llc_bytes: number | null;
    node: string;
    /** 1, 5 and 15-minute load averages when the run started: other work on the machine skews every figure. */
    load_average: number[];
  };
  adapter: AdapterReport;
  roofline: Roofline;
  models: Record<string, ModelReport>;
  /** Other engines on the same machine, shapes and prompt (`--peer`); empty without it. */
  peers: PeerReports;
}

export interface BenchOptions {
  shapes: string[];
  /** The command line, recorded in the report. */
  command: string;
  quick: boolean;
  log?: (line: string) => void;
  onLoadProgress?: (p: UploadProgress) => void;
  peers?: PeerName[];
  /** Time limit of each peer run, in seconds (default: PEER_TIMEOUT_S per backend). */
  peerTimeoutS?: number;
  /** Batch sizes for batched decode and packed prefill (`--batch 1,4,8,16`); none without it. */
  batches?: number[];
  /** How the models choose their kernel variants (forced, tuned at load). */
  kernels?: Pick<LoadOptions, "kernels" | "tune">;
  /** The weight modes to measure, each shape loaded once per mode (default bf16); the first is the headline. */
  quant?: WeightMode[];
}

/**
 * The WebGPU implementation (the CLI's adapter comes from nodeGpu: Dawn through the `webgpu` package), and
 * the native API where the platform leaves Dawn only one for a core (not compatibility-mode) device.
 */
function backendName(features: string[]): string {
  const version = createRequire(import.meta.url)("webgpu/package.json").version as string;
  const native = features.includes("core-features-and-limits") ? ({ linux: "Vulkan", darwin: "Metal" } as Record<string, string>)[process.platform] : undefined;
  return `Dawn (node webgpu ${version})${native ? `, ${native}` : ""}`;
}

function adapterReport(adapter: GPUAdapter, device: GPUDevice, timer: GpuTimer): AdapterReport {
  const info = describeAdapter(adapter, device);
  return { vendor: info.vendor, architecture: info.architecture, description: info.description, backend: backendName(info.features),
    features: info.features, timing: timer.method };
}

/** A log that prefixes each line with the seconds since it was made. */
function elapsedLog(log: ((line: string) => void) | undefined): (line: string) => void {
  const start = performance.now();
  return (line) => log?.(`[${((performance.now() - start) / 1000).toFixed(1)}s] ${line}`);
}

/** Makes uncaptured GPU errors (which would silently void a timing) fail the run. */
function watchErrors(device: GPUDevice): (phase: string) => void {
  const errors: string[] = [];
  device.addEventListener("uncapturederror", (e) => errors.push((e as GPUUncapturedErrorEvent).error.message));
  return (phase) => {
    if (errors.length > 0) throw new Error(`GPU error during ${phase}: ${errors[0]}`);
  };
}

interface Measured extends ModelSetup {
  prefill: PrefillFigures[];
  decode: DecodeFigures[];
  kernels: { decode: StepProfile; prefill: StepProfile };
  skipped: string[];
}

async function measureModel(device: GPUDevice, shape: string, weights: WeightMode, mode: BenchMode, timer: GpuTimer, batches: number[],
  log: (line: string) => void, check: (phase: string) => void, onLoadProgress?: (p: UploadProgress) => void,
  kernels?: Pick<LoadOptions, "kernels" | "tune">): Promise<Measured> {
  const longest = Math.max(...mode.prompts, ...(batches.length > 0 ? [BATCH_CONTEXT, 2 * PACKED_LENGTH] : []));
  const maxBatch = Math.max(1, ...batches, ...(batches.length > 0 ? [PACKED_DOCUMENTS] : []));
  const what = `${shape} ${weights}`;
  log(`${what}: loading${maxBatch > 1 ? ` with ${maxBatch} KV-cache slots` : ""}`);
  const { model, load } = await openModel(device, shape, longest + mode.decodeSteps, onLoadProgress, maxBatch, { ...kernels, quant: quantOf(weights) });
  try {
    check(`${what} load`);
    const first = mode.prompts[0];
    // The kernel tables use the shapes of the first prompt: its prefill (one chunk at most) and the decode after it.
    const prefillStep = { T: Math.min(first, model.prefillChunk), pos0: 0 };
    const decodeStep = { T: 1, pos0: first };
    log(`${what}: kernels at decode (T=1, pos0=${decodeStep.pos0})`);
    const decodeKernels = await profileStep(model, decodeStep, timer, mode.kernels);
    log(`${what}: kernels at prefill (T=${prefillStep.T})`);
    const prefillKernels = await profileStep(model, prefillStep, timer, mode.kernels);
    check(`${what} kernels`);
    const prefill: PrefillFigures[] = [];
    const decode: DecodeFigures[] = [];
    for (const tokens of mode.prompts) {
      log(`${what}: prefill ${tokens} tokens (${mode.prefillRuns} run${mode.prefillRuns > 1 ? "s" : ""})`);
      prefill.push(await measurePrefill(model, tokens, mode.prefillRuns));
      log(`${what}: decode ${mode.decodeSteps} tokens after it (${prefill.at(-1)!.tok_s.toFixed(2)} prompt tok/s)`);
      decode.push(await measureDecode(model, mode.decodeSteps));
      check(`${what} prefill/decode`);
    }
    let batched: BatchedFigures | undefined;
    if (batches.length > 0) {
      const decodeAt: BatchedDecodeFigures[] = [];
      for (const batch of batches) {
        log(`${what}: ${batch} sequences decoding together at context ${BATCH_CONTEXT}`);
        decodeAt.push(await measureBatchedDecode(model, batch, BATCH_CONTEXT, mode.decodeSteps));
      }
      log(`${what}: ${PACKED_DOCUMENTS} documents of about ${PACKED_LENGTH} tokens, packed and one at a time`);
      batched = { decode: decodeAt, prefill: await measurePackedPrefill(model, PACKED_DOCUMENTS, PACKED_LENGTH, mode.prefillRuns) };
      check(`${what} batched`);
    }
    const skipped = PROMPTS.filter((n) => !mode.prompts.includes(n)).map((n) => `prefill ${n} tokens and decode after it (--quick)`);
    return {
      quant_mode: weights, config: model.config, load, kernel_variants: model.kernelChoice, kernel_variants_from: model.tuneReport?.source ?? "defaults", max_batch: model.maxBatch, kv_cache_bytes: model.kvCacheBytes, batched,
      gpu_buffer_bytes: model.gpuBytes, host_peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
      prefill, decode, kernels: { decode: decodeKernels, prefill: prefillKernels }, skipped,
    };
  } finally {
    model.destroy();
  }
}

/** Relates a model's measurements to the roofline (definitions in bench/NOTES.md). */
function derive(m: Measured, roofline: Roofline): Omit<ModelReport, "quant"> {
  const readBps = roofline.read_gbps * 1e9;
  const fraction = (r: KernelRow) => Math.max(r.gbps / roofline.read_gbps, r.gflops / roofline.peak_gflops);
  const withFractions = (p: StepProfile): StepFigures => ({ ...p, rows: p.rows.map((r) => ({ ...r, roofline_fraction: fraction(r) })) });
  const decode = m.decode.map((d) => {
    const floor_s = d.bytes_per_token / readBps + d.dispatches_per_token * roofline.dispatch_us * 1e-6;
    return { ...d, floor_s, vs_floor: d.s_per_token / floor_s };
  });
  const prefill = m.prefill.map((p) => ({ ...p, fraction_of_peak: p.gflops / roofline.peak_gflops }));
  const p = prefill.at(-1)!;
  const d = decode.at(-1)!;
  return {
    ...m, prefill, decode,
    kernels: { decode: withFractions(m.kernels.decode), prefill: withFractions(m.kernels.prefill) },
    headline: { prompt_tokens: p.tokens, context: d.context },
    prefill_tok_s: p.tok_s,
    decode_tok_s: d.tok_s,
    decode_vs_floor: d.vs_floor,
    prefill_fraction_of_peak: p.fraction_of_peak,
  };
}

export async function runBench(adapter: GPUAdapter, device: GPUDevice, opts: BenchOptions): Promise<BenchReport> {
  const load_average = loadavg();
  const log = elapsedLog(opts.log);
  const check = watchErrors(device);
  const mode = benchMode(opts.quick);
  const timer = new GpuTimer(device);

  // Models before the roofline, so that each model's peak host memory does not include the stream
  // buffers (which live in host memory on a CPU adapter).
  const modes = opts.quant ?? ["bf16"];
  const measured = new Map<string, Measured[]>();
  for (const shape of opts.shapes) {
    const each: Measured[] = [];
    for (const weights of modes) each.push(await measureModel(device, shape, weights, mode, timer, opts.batches ?? [], log, check, opts.onLoadProgress, opts.kernels));
    measured.set(shape, each);
  }

  const streamBytes = defaultStreamBytes();
  log(`roofline: streaming ${(streamBytes / 2 ** 20).toFixed(0)} MiB, multiply-add loop, empty dispatches`);
  const roofline = await measureRoofline(new Kernels(device), timer, { ...mode.roofline, streamBytes });
  check("roofline");

  // After everything of r3gpu's, so that no peer process or its memory is around while r3gpu is timed. The
  // peers get the bench's first prompt (measured in every mode) and as many decode steps.
  const peers: PeerReports = opts.peers?.includes("llama.cpp")
    ? await measureLlamaCpp([...measured].map(([shape, [m]]) => ({ shape, config: m.config, prefill: m.prefill[0], decode: m.decode[0], quant: m.quant_mode })),
      { decodeSteps: mode.decodeSteps, timeoutS: opts.peerTimeoutS, log })
    : {};

  const cpu = cpus();
  return {
    schema: 1,
    date: new Date().toISOString(),
    command: opts.command,
    quick: opts.quick,
    host: { platform: `${process.platform} ${process.arch}`, cpu: cpu[0]?.model ?? "", cores: cpu.length, memory_bytes: totalmem(),
      llc_bytes: lastLevelCacheBytes() ?? null, node: process.version, load_average },
    adapter: adapterReport(adapter, device, timer),
    roofline,
    models: Object.fromEntries([...measured].map(([shape, each]) => [shape, withModes(each.map((m) => derive(m, roofline)))])),
    peers,
  };
}

/** The first mode's report, with every mode's headline figures (and their ratios to bf16) under `quant`. */
function withModes(reports: Omit<ModelReport, "quant">[]): ModelReport {
  const bf16 = reports.find((r) => r.quant_mode === "bf16");
  const ratio = (x: number, base: number | undefined) => (base === undefined ? null : x / base);
  const quant = Object.fromEntries(reports.map((r) => [r.quant_mode, {
    weight_bytes: r.load.weight_bytes, gpu_buffer_bytes: r.gpu_buffer_bytes, bytes_per_token: r.decode.at(-1)!.bytes_per_token,
    decode_tok_s: r.decode_tok_s, prefill_tok_s: r.prefill_tok_s, decode_vs_floor: r.decode_vs_floor,
    prefill_fraction_of_peak: r.prefill_fraction_of_peak, decode_vs_bf16: ratio(r.decode_tok_s, bf16?.decode_tok_s),
    prefill_vs_bf16: ratio(r.prefill_tok_s, bf16?.prefill_tok_s), kernel_variants: r.kernel_variants,
  } satisfies QuantFigures]));
  return { ...reports[0], quant };
}

/** The targets of `bench --check` that a report misses, one line each. */
export function missedTargets(report: BenchReport): string[] {
  const missed: string[] = [];
  for (const [shape, m] of Object.entries(report.models)) {
    if (!(m.decode_vs_floor <= TARGETS.decode_vs_floor)) {
      missed.push(`${shape}: decode_vs_floor ${m.decode_vs_floor.toFixed(2)} > ${TARGETS.decode_vs_floor}`);
    }
    if (!(m.prefill_fraction_of_peak >= TARGETS.prefill_fraction_of_peak)) {
      missed.push(`${shape}: prefill_fraction_of_peak ${m.prefill_fraction_of_peak.toFixed(3)} < ${TARGETS.prefill_fraction_of_peak}`);
    }
  }
  return missed;
}

export interface ProfileReport {
  shape: string;
  adapter: AdapterReport;
  load: LoadFigures;
  /** Each step's kernels timed in isolation, and the wall time of the same step run by the model. */
  decode: StepProfile & { wall_s: number };
  prefill: StepProfile & { wall_s: number };
}

/**
 * One prefill of `tokens` (capped at the model's prefill chunk, so that it is one step) and one decode
 * step after it, split by kernel.
 */
export async function runProfile(adapter: GPUAdapter, device: GPUDevice, shape: string, tokens: number,
  opts: Pick<BenchOptions, "log" | "onLoadProgress"> & { kernels?: Pick<LoadOptions, "kernels" | "tune" | "quant"> } = {}): Promise<ProfileReport> {
  const log = elapsedLog(opts.log);
  const check = watchErrors(device);
  const timer = new GpuTimer(device);
  const kernels = benchMode(true).kernels;
  const decodeSteps = 3;
  log(`${shape}: loading`);
  const { model, load } = await openModel(device, shape, tokens + decodeSteps, opts.onLoadProgress, 1, opts.kernels);
  try {
  check(`${shape} load`);
  const T = Math.min(tokens, model.prefillChunk);
  log(`${shape}: kernels at prefill (T=${T})`);
  const prefill = await profileStep(model, { T, pos0: 0 }, timer, kernels);
  log(`${shape}: kernels at decode (T=1, pos0=${T})`);
  const decode = await profileStep(model, { T: 1, pos0: T }, timer, kernels);
  log(`${shape}: the model's own prefill and decode steps`);
  const prefillWall = await measurePrefill(model, T, 1);
  const decodeWall = await measureDecode(model, decodeSteps);
  check(`${shape} profile`);
  return {
    shape, adapter: adapterReport(adapter, device, timer), load,
    decode: { ...decode, wall_s: decodeWall.s_per_token },
    prefill: { ...prefill, wall_s: prefillWall.ttft_s },
  };
  } finally {
    model.destroy();
  }
}
