// The op skeleton. An op is built once per model with its buffers: its constructor checks shapes and binds its
// kernels (KernelCall: uniforms + bind group) and asks for their pipelines; at each step `encode` sets the
// uniforms by name, picks the pipeline for the step and records the dispatch. `cost` states the op's compulsory
// work for rooflines. An op owns its uniform buffers and frees them in `destroy`.
import { KernelCall, type KernelDecl, type Kernels, type PipelineRef } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";

/**
 * What one forward submission processes: T tokens (the rows of the activations), each at its own (slot, position)
 * of the KV cache as the model's token table says, and the rows whose logits the LM head computes.
 */
export interface Step {
  T: number;
  /** Rows that get logits (one per sequence that needs its next token). */
  outputs: number;
  /** Keys attended over the step: the sum over its tokens of position + 1. */
  keys: number;
  /** Largest position + 1 among the step's tokens. */
  maxKeys: number;
  /** Rows to copy out of named activations, set by the model for steps that capture. */
  capture?: ReadonlyMap<string, CaptureCopy>;
  /** Some output's logits are read back (sampling, dump): a head that fuses the argmax must still write them. */
  logits?: boolean;
}

/** Row ranges [srcRow, srcRow + rows) of an activation copied to dstRow.. of `buffer`. */
export interface CaptureCopy {
  buffer: GPUBuffer;
  ranges: { srcRow: number; dstRow: number; rows: number }[];
}

/** A single sequence's step of T tokens at positions pos0..pos0+T-1, with logits for its last token. */
export function sequenceStep(T: number, pos0: number): Step {
  return { T, outputs: 1, keys: T * pos0 + (T * (T + 1)) / 2, maxKeys: pos0 + T };
}

/** Compulsory work of one op for a step: arithmetic and bytes moved to or from memory (for rooflines). */
export interface Cost {
  flops: number;
  bytes: number;
}

/** What the model's forward pass is a list of. */
export interface StepOp {
  readonly label: string;
  /** The kernel family, for per-family profiles. */
  readonly family: string;
  encode(rec: Recorder, step: Step): void;
  cost(step: Step): Cost;
  destroy(): void;
}

export abstract class Op implements StepOp {
  private readonly calls: KernelCall[] = [];

  constructor(protected readonly kernels: Kernels, readonly label: string, readonly family: string) {}

  /** Binds `decl` over `buffers` for this op (the op owns the result). */
  protected bind<B extends string, U extends string>(decl: KernelDecl<B, U>, buffers: Partial<Record<B, GPUBuffer>>, label = this.label) {
    const call = new KernelCall(this.kernels, decl, buffers, label);
    this.calls.push(call as unknown as KernelCall);
    return call;
  }

  abstract encode(rec: Recorder, step: Step): void;
  abstract cost(step: Step): Cost;

  destroy(): void {
    for (const c of this.calls) c.destroy();
  }
}

type BindingsOf<D> = D extends KernelDecl<infer B, string> ? B : never;
type UniformsOf<D> = D extends KernelDecl<string, infer U> ? U : never;

/** An op of one kernel bound once: most ops of the forward pass. */
export abstract class SingleKernelOp<D extends KernelDecl<string, string>> extends Op {
  protected readonly call: KernelCall<BindingsOf<D>, UniformsOf<D>>;
  protected readonly pipeline: PipelineRef;

  constructor(kernels: Kernels, label: string, family: string, decl: D, buffers: Partial<Record<BindingsOf<D>, GPUBuffer>>) {
    super(kernels, label, family);
    this.call = this.bind(decl as KernelDecl<BindingsOf<D>, UniformsOf<D>>, buffers);
    this.pipeline = this.call.pipeline();
  }
}

export function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}
