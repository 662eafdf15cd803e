// What the page exposes as window.r3gpu, so that a test (or a console user) can drive it without clicking.
// Each function is the one the page's own controls call.
import type { GoldenReport } from "../src/check/golden.ts";
import type { GpuInfo } from "../src/gpu/device.ts";
import type { KernelChoice } from "../src/ops/kernel-variants.ts";

export interface AdapterSummary extends GpuInfo {
  /** A software or otherwise limited adapter (e.g. SwiftShader). */
  isFallbackAdapter: boolean;
}

export interface ModelSummary {
  name: string;
  layers: number;
  hiddenSize: number;
  vocabSize: number;
  weightBytes: number;
  loadSeconds: number;
  /** The folder has golden.json, so the golden check can run. */
  golden: boolean;
  /** Why chat is unavailable (no chat template), or null. */
  chatUnavailable: string | null;
  /** Why search is unavailable (not a Search-R3 tokenizer), or null. */
  searchUnavailable: string | null;
  /** The kernel variant of each op slot, and where the choice came from. */
  kernels: KernelChoice;
  kernelsFrom: "measured" | "cache" | "defaults";
}

/** How to load: kernel variants forced by name ("linear.decode=splitk,..."), and whether to tune the others. */
export interface LoadRequest {
  kernels?: string;
  /** Measure the variants at load (cached in IndexedDB); default true. */
  tune?: boolean;
}

export interface SearchRequest {
  query: string;
  documents: string[];
  /** Let the model reason about the query before embedding it; otherwise the query prompt is teacher-forced. */
  reasoning: boolean;
  maxReasoningTokens?: number;
}

export interface RankedDocument {
  index: number;
  document: string;
  score: number;
}

export interface SearchOutcome {
  /** Cosine similarity of the query with each document, in document order. */
  scores: number[];
  /** Most similar first. */
  ranked: RankedDocument[];
  /** What the model wrote before the embed token (reasoning searches only). */
  reasoning?: string;
}

export interface R3gpuHook {
  /** The adapter in use; rejects with the reason when the browser has no WebGPU adapter. */
  gpu(): Promise<AdapterSummary>;
  loadFromUrl(url: string, request?: LoadRequest): Promise<ModelSummary>;
  /** Kernel choices that together run every variant the adapter supports (for golden checks of all of them). */
  variantChoices(): Promise<KernelChoice[]>;
  /** The golden check of the loaded model; with maxLength, only its sequences of at most that many tokens. */
  runGolden(opts?: { maxLength?: number }): Promise<GoldenReport>;
  search(request: SearchRequest): Promise<SearchOutcome>;
}

declare global {
  interface Window {
    r3gpu: R3gpuHook;
  }
}
