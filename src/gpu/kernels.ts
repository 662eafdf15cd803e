// The kernel registry: which WGSL file each kernel comes from, how its bindings look, and a cache of
// compiled pipeline variants. Kernels that share a binding signature share one explicit bind group
// layout, so one bind group serves every variant (e.g. the prefill and decode pipelines of `linear`).
import { SHADERS } from "./shaders.gen.ts";

export type WeightDType = "BF16" | "F16" | "F32";
type Binding = "uniform" | "read" | "rw";

interface KernelSpec {
  bindings: Binding[];
  /** Reads weights through load_w2/load_w8 (weights_<dtype>.wgsl + weight_layout.wgsl): compiled per dtype. */
  weights?: boolean;
}

const KERNELS = {
  widen: { bindings: ["uniform", "read", "rw"], weights: true },
  embedding: { bindings: ["uniform", "read", "read", "rw"], weights: true },
  rmsnorm: { bindings: ["uniform", "read", "read", "rw"] },
  linear: { bindings: ["uniform", "read", "read", "read", "rw"], weights: true },
  rope_kv: { bindings: ["uniform", "rw", "read", "read", "read", "rw", "rw"] },
  attention: { bindings: ["uniform", "read", "read", "read", "rw"] },
  swiglu: { bindings: ["uniform", "rw", "read"] },
  argmax: { bindings: ["uniform", "read", "rw"] },
  random: { bindings: ["uniform", "rw"] },
  roofline: { bindings: ["uniform", "read", "rw"] },
  relayout: { bindings: ["uniform", "read", "rw"] },
} satisfies Record<string, KernelSpec>;

export type KernelName = keyof typeof KERNELS;

export interface Variant {
  dtype?: WeightDType;
  constants?: Record<string, number>;
}

export class Kernels {
  private layouts = new Map<string, GPUBindGroupLayout>();
  private pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(readonly device: GPUDevice) {}

  layout(name: KernelName): GPUBindGroupLayout {
    const bindings = (KERNELS[name] as KernelSpec).bindings;
    const key = bindings.join(",");
    let layout = this.layouts.get(key);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        label: key,
        entries: bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === "uniform" ? "uniform" : kind === "read" ? "read-only-storage" : "storage" },
        })),
      });
      this.layouts.set(key, layout);
    }
    return layout;
  }

  /** Compiles (once) and returns a pipeline; awaited at load time so no token waits on a compile. */
  pipeline(name: KernelName, variant: Variant = {}): Promise<GPUComputePipeline> {
    const spec = KERNELS[name] as KernelSpec;
    if (spec.weights && !variant.dtype) throw new Error(`kernel ${name} needs a weight dtype`);
    const key = `${name}/${variant.dtype ?? ""}/${JSON.stringify(variant.constants ?? {})}`;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const prelude = spec.weights ? `${SHADERS[`weights_${variant.dtype!.toLowerCase()}`]}\n${SHADERS.weight_layout}\n` : "";
      const code = prelude + SHADERS[name];
      const module = this.device.createShaderModule({ label: name, code });
      pipeline = this.device.createComputePipelineAsync({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(name)] }),
        compute: { module, entryPoint: "main", constants: variant.constants },
      }).catch((e: Error) => {
        throw new Error(`r3gpu: failed to compile kernel ${key}: ${e.message}`);
      });
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  bindGroup(name: KernelName, buffers: GPUBuffer[], label?: string): GPUBindGroup {
    return this.device.createBindGroup({
      label: label ?? name,
      layout: this.layout(name),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }
}

/** A small uniform buffer holding one dispatch's parameters; written only when they change. */
export class Params {
  readonly buffer: GPUBuffer;
  private readonly words: Uint32Array<ArrayBuffer>;
  private readonly floats: Float32Array;
  private dirty = true;

  constructor(private readonly device: GPUDevice, count: number, label: string) {
    const bytes = Math.max(16, Math.ceil((count * 4) / 16) * 16);
    this.buffer = device.createBuffer({ label, size: bytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.words = new Uint32Array(bytes / 4);
    this.floats = new Float32Array(this.words.buffer);
  }

  /** Sets the fields in order; a field given as {f32: x} is stored as a float. */
  set(...values: (number | { f32: number })[]): void {
    values.forEach((v, i) => {
      if (typeof v === "number") {
        if (this.words[i] !== v) { this.words[i] = v; this.dirty = true; }
      } else if (this.floats[i] !== Math.fround(v.f32)) {
        this.floats[i] = v.f32;
        this.dirty = true;
      }
    });
    if (this.dirty) {
      this.device.queue.writeBuffer(this.buffer, 0, this.words);
      this.dirty = false;
    }
  }
}

/** Records the dispatches of one submission, opening compute passes lazily around buffer copies. */
export class Recorder {
  readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | undefined;
  dispatches = 0;

  constructor(readonly device: GPUDevice) {
    this.encoder = device.createCommandEncoder();
  }

  dispatch(pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, x: number, y = 1, z = 1): void {
    if (x === 0 || y === 0 || z === 0) return;
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  submit(): void {
    this.endPass();
    this.device.queue.submit([this.encoder.finish()]);
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }
}

const MAX_GROUPS = 65535;

/** Spreads n workgroups over x and y when n exceeds the per-dimension limit (kernels linearise). */
export function grid(n: number): [number, number] {
  if (n <= MAX_GROUPS) return [n, 1];
  const y = Math.ceil(n / MAX_GROUPS);
  return [Math.ceil(n / y), y];
}
