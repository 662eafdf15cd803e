// The tuner's memory: a choice of kernel variants is kept per adapter (vendor, architecture, description, features,
// limits), kernel source, model shape, weight dtype, step size classes (batch, context, prompt chunk) and precision, so that the second load of a
// model on one machine tunes nothing. Where it lives depends on the runtime: cache-fs.ts (Node, Deno) and
// cache-indexeddb.ts (browsers).
import { SHADERS } from "../gpu/shaders.gen.ts";
import type { KernelChoice } from "../ops/kernel-variants.ts";
import { DECODE_MAX_ROWS, TUNED_CONTEXT } from "../ops/variant.ts";
import type { VariantResult } from "./tuner.ts";

export interface TuneRecord {
  choice: KernelChoice;
  results: VariantResult[];
  /** When it was measured (ISO time), for people reading the cache. */
  date: string;
}

export interface TuneCache {
  /** Where the records are kept, for messages. */
  readonly where: string;
  read(key: string): Promise<TuneRecord | undefined>;
  write(key: string, record: TuneRecord): Promise<void>;
}

export interface TuneKeyParts {
  adapter: { vendor: string; architecture: string; description: string };
  features: string[];
  limits: Record<string, number>;
  /** The model's dimensions, and the largest batch its decode steps have. */
  shape: Record<string, number | boolean>;
  dtype: string;
  precision: string;
  /** Slots the caller forced (their variants change what the others are measured against). */
  fixed: Record<string, string>;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A stable hash of everything a tuning result depends on (the kernel sources included, so an edit re-tunes). */
export async function tuneKey(parts: TuneKeyParts): Promise<string> {
  const sources = await sha256Hex(Object.keys(SHADERS).sort().map((k) => `${k}\n${SHADERS[k]}`).join("\n"));
  return sha256Hex(JSON.stringify({ ...parts, features: [...parts.features].sort(), sources }));
}

const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * The sizes of the steps a model's slots are measured at, in classes (powers of two), so that loads of one model with
 * nearby limits share a tuning result: the rows of a decode step (sequences, at most DECODE_MAX_ROWS), the keys of its attention
 * (at most TUNED_CONTEXT) and the rows of a prompt chunk.
 */
export function stepClasses(t: { maxBatch: number; maxSeqLen: number; maxTokens: number }): Record<string, number> {
  return { decodeRows: pow2(Math.min(t.maxBatch, DECODE_MAX_ROWS)), decodeKeys: pow2(Math.min(t.maxSeqLen, TUNED_CONTEXT)), prefillRows: pow2(t.maxTokens) };
}

/** The device's limits as plain numbers (Dawn and wgpu expose them as prototype accessors). */
export function deviceLimits(device: GPUDevice): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key in device.limits) {
    const v = (device.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === "number") out[key] = v;
  }
  return out;
}
