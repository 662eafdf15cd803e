// Kernels as declarations, and the machinery every op and load-time kernel shares.
//
// A KernelDecl is the whole contract between the host and one WGSL file: its storage bindings by name and access
// (binding 0 is always the uniform struct `p: Params`), its uniform fields by name and type, its workgroup size and
// the constants and overrides it is compiled with. From it come the bind group layout, the uniform buffer (set by
// field name) and the bind groups; the build checks every shader against its declaration (src/gpu/wgsl.ts).
//
// Declarations that share their bindings and uniforms form a family (e.g. the decode and prefill linear kernels):
// one bind group serves every member, so an op picks a member per step.
import { isQuantized } from "./matrix.ts";
import { SHADERS } from "./shaders.gen.ts";
import { SHADER_CONSTANTS, wgslConstants } from "./layout.ts";
import { assemble, preprocess } from "./wgsl.ts";

/** The dtypes weights are stored in by the files (and kept in on the GPU unless quantized). */
export type WeightDType = "BF16" | "F16" | "F32";
/** Weights quantized at load: int8 or int4 with f16 scales (QUANT_LAYOUT in src/gpu/layout.ts). */
export type QuantDType = "Q8" | "Q4";
/** What a weight matrix is stored as on the GPU. */
export type GpuDType = WeightDType | QuantDType;
export type ScalarType = "u32" | "i32" | "f32";
export type Access = "read" | "read_write";

/** A storage binding; `when` makes it optional: bound only when the op has the buffer, with the flag `when` set. */
export type BindingSpec = Access | { access: Access; when: string };

export interface KernelDecl<B extends string = string, U extends string = string> {
  /** The name it is known by (e.g. in error messages and R3GPU_KERNELS). */
  name: string;
  /** shaders/<shader>.wgsl */
  shader: string;
  /** The WGSL itself, where it does not come from shaders/ (a user's kernel given to `r3gpu tune --kernel`). */
  code?: string;
  bindings: Record<B, BindingSpec>;
  uniforms: Record<U, ScalarType>;
  /** Invocations per workgroup: the shader's `@workgroup_size(WG)`. */
  workgroupSize: number;
  /** Further u32 constants compiled into the shader (e.g. rows per invocation), read by the host too. */
  constants?: Record<string, number>;
  /** Pipeline-overridable constants: `override NAME: TYPE` in the shader. */
  overrides?: Record<string, "u32" | "f32" | "bool">;
  /** Preprocessor flags the shader tests with #if, besides those of optional bindings. */
  flags?: string[];
  /**
   * Flags of `flags` that are set in every pipeline of this declaration: members of one family that share a
   * shader and differ in an #if block (e.g. SUBGROUPS, whose `enable subgroups;` only some adapters accept).
   */
  defines?: string[];
  /**
   * Reads weight matrices: compiled per dtype with shaders/lib/weights_<dtype>.wgsl (and lib/weights_unscaled.wgsl for
   * a float dtype) and lib/weight_layout.wgsl.
   */
  weights?: boolean;
}

const declared: KernelDecl[] = [];

/** Declares a kernel (and records it, so that the build's check and the tuner can list every kernel). */
export function defineKernel<B extends string, U extends string>(decl: KernelDecl<B, U>): KernelDecl<B, U> {
  declared.push(decl as unknown as KernelDecl);
  return decl;
}

/** Every kernel declared by the modules loaded so far. */
export function declaredKernels(): readonly KernelDecl[] {
  return declared;
}

/** How one pipeline of a kernel is compiled. */
export interface Variant {
  dtype?: GpuDType;
  /** Preprocessor flags; those of optional bindings are set by the KernelCall that binds them. */
  flags?: readonly string[];
  overrides?: Record<string, number | boolean>;
}

/** A pipeline being compiled; `get()` once Kernels.compiled() has resolved (or `ready` has). */
export class PipelineRef {
  private pipeline?: GPUComputePipeline;
  readonly ready: Promise<GPUComputePipeline>;

  constructor(readonly key: string, compile: Promise<GPUComputePipeline>) {
    this.ready = compile.then((p) => (this.pipeline = p));
  }

  get(): GPUComputePipeline {
    if (!this.pipeline) throw new Error(`r3gpu: pipeline ${this.key} used before it was compiled`);
    return this.pipeline;
  }
}

/** The storage bindings present, each at its declared index (binding 0 is the uniforms; absent optional ones leave a gap). */
function bindingEntries(decl: KernelDecl, present: ReadonlySet<string>): { name: string; access: Access; binding: number }[] {
  return Object.entries(decl.bindings as Record<string, BindingSpec>).flatMap(([name, spec], i) => {
    const access = typeof spec === "string" ? spec : spec.access;
    return typeof spec === "string" || present.has(name) ? [{ name, access, binding: i + 1 }] : [];
  });
}

/** The compiled pipelines and bind group layouts of one device; one per model (or per tool), shared by its ops. */
export class Kernels {
  private layouts = new Map<string, GPUBindGroupLayout>();
  private pipelines = new Map<string, PipelineRef>();

  constructor(readonly device: GPUDevice) {}

  /** The layout of binding 0 (uniforms) plus the storage bindings bound; kernels of one signature share it. */
  layout(entries: { access: Access; binding: number }[]): GPUBindGroupLayout {
    const key = ["0:uniform", ...entries.map((e) => `${e.binding}:${e.access}`)].join(",");
    let layout = this.layouts.get(key);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        label: key,
        entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
          ...entries.map((e) => ({
            binding: e.binding, visibility: GPUShaderStage.COMPUTE,
            buffer: { type: e.access === "read" ? "read-only-storage" as const : "storage" as const },
          }))],
      });
      this.layouts.set(key, layout);
    }
    return layout;
  }

  /** The WGSL module of a kernel variant: constants, weight access (for weight kernels), then the shader. */
  source(decl: KernelDecl, variant: Variant = {}): string {
    if (decl.weights && !variant.dtype) throw new Error(`kernel ${decl.name} reads weights: give a dtype`);
    const flags = new Set([...(decl.defines ?? []), ...(variant.flags ?? [])]);
    const constants = { ...SHADER_CONSTANTS, WG: decl.workgroupSize, ...decl.constants };
    const dtype = variant.dtype!;
    const libs = decl.weights
      ? [SHADERS[`lib/weights_${dtype.toLowerCase()}`], ...(isQuantized(dtype) ? [] : [SHADERS["lib/weights_unscaled"]]), SHADERS["lib/weight_layout"]]
      : [];
    const code = decl.code ?? SHADERS[decl.shader];
    if (code === undefined) throw new Error(`kernel ${decl.name}: no shaders/${decl.shader}.wgsl`);
    return assemble([wgslConstants(constants), ...libs, preprocess(code, flags, decl.shader)]);
  }

  /** Starts compiling (once per variant) and returns the pipeline; await compiled() before the first dispatch. */
  pipeline(decl: KernelDecl, variant: Variant = {}): PipelineRef {
    const flags = [...new Set(variant.flags ?? [])].sort();
    const key = `${decl.name}/${variant.dtype ?? ""}/${flags.join("+")}/${JSON.stringify(variant.overrides ?? {})}`;
    let ref = this.pipelines.get(key);
    if (!ref) {
      const present = new Set(Object.entries(decl.bindings as Record<string, BindingSpec>)
        .filter(([, s]) => typeof s === "string" || flags.includes(s.when)).map(([n]) => n));
      const module = this.device.createShaderModule({ label: key, code: this.source(decl, { ...variant, flags }) });
      const compile = this.device.createComputePipelineAsync({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(bindingEntries(decl, present))] }),
        // Pipeline constants are numbers in the API; a bool override takes 0 or 1.
        compute: { module, entryPoint: "main", constants: variant.overrides && Object.fromEntries(
          Object.entries(variant.overrides).map(([name, v]) => [name, Number(v)])) },
      }).catch((e: Error) => {
        throw new Error(`r3gpu: failed to compile kernel ${key}: ${e.message}`);
      });
      ref = new PipelineRef(key, compile);
      this.pipelines.set(key, ref);
    }
    return ref;
  }

  /** Waits for every pipeline requested so far; throws the first compile error. */
  async compiled(): Promise<void> {
    await Promise.all([...this.pipelines.values()].map((p) => p.ready));
  }
}

/** A uniform buffer holding one struct Params, set by field name; written only when a value changes. */
export class Uniforms<U extends string> {
  readonly buffer: GPUBuffer;
  private readonly index: Map<string, { i: number; type: ScalarType }>;
  private readonly view: DataView;
  private readonly bytes: Uint8Array<ArrayBuffer>;

  constructor(private readonly device: GPUDevice, fields: Record<U, ScalarType>, label: string) {
    const names = Object.keys(fields) as U[];
    this.index = new Map(names.map((n, i) => [n, { i, type: fields[n] }]));
    const size = Math.max(16, Math.ceil((names.length * 4) / 16) * 16);
    this.buffer = device.createBuffer({ label: `${label} params`, size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  set(values: Partial<Record<U, number>>): void {
    let dirty = false;
    for (const [name, v] of Object.entries(values) as [U, number][]) {
      const field = this.index.get(name);
      if (!field) throw new Error(`uniform ${name}: not a field of this kernel`);
      const at = field.i * 4;
      const before = this.view.getUint32(at, true);
      if (field.type === "f32") this.view.setFloat32(at, v, true);
      else if (field.type === "i32") this.view.setInt32(at, v, true);
      else {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform ${name} = ${v} is not a u32`);
        this.view.setUint32(at, v, true);
      }
      dirty ||= this.view.getUint32(at, true) !== before;
    }
    if (dirty) this.device.queue.writeBuffer(this.buffer, 0, this.bytes);
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

/**
 * One bound instance of a kernel family: its uniform buffer and bind group over the op's buffers. Optional
 * bindings left out are not bound, and the flags that drop them from the shader are set on every pipeline asked
 * through `pipeline`. Owns its uniform buffer.
 */
export class KernelCall<B extends string = string, U extends string = string> {
  readonly uniforms: Uniforms<U>;
  readonly bindGroup: GPUBindGroup;
  /** Flags of the optional bindings that are bound. */
  readonly flags: readonly string[];

  constructor(readonly kernels: Kernels, readonly decl: KernelDecl<B, U>, buffers: Partial<Record<B, GPUBuffer>>, readonly label: string) {
    const specs = decl.bindings as Record<string, BindingSpec>;
    const given = buffers as Record<string, GPUBuffer | undefined>;
    for (const name of Object.keys(given)) {
      if (!(name in specs)) throw new Error(`${label}: kernel ${decl.name} has no binding "${name}"`);
    }
    const present = new Set<string>();
    const flags: string[] = [];
    for (const [name, spec] of Object.entries(specs)) {
      if (given[name]) present.add(name);
      else if (typeof spec === "string") throw new Error(`${label}: kernel ${decl.name} needs a buffer for "${name}"`);
      if (given[name] && typeof spec !== "string") flags.push(spec.when);
    }
    this.flags = flags;
    const entries = bindingEntries(decl as KernelDecl, present);
    this.uniforms = new Uniforms(kernels.device, decl.uniforms, label);
    this.bindGroup = kernels.device.createBindGroup({
      label,
      layout: kernels.layout(entries),
      entries: [{ binding: 0, resource: { buffer: this.uniforms.buffer } },
        ...entries.map((e) => ({ binding: e.binding, resource: { buffer: given[e.name]! } }))],
    });
  }

  /** A pipeline of `member` (default: the declaration bound) with this call's binding flags. */
  pipeline(member: KernelDecl<B, U> = this.decl, variant: Variant = {}): PipelineRef {
    if (member !== this.decl && (member.bindings !== this.decl.bindings || member.uniforms !== this.decl.uniforms)) {
      throw new Error(`${this.label}: kernel ${member.name} is not of the family of ${this.decl.name} (other bindings or uniforms)`);
    }
    return this.kernels.pipeline(member, { ...variant, flags: [...this.flags, ...(variant.flags ?? [])] });
  }

  destroy(): void {
    this.uniforms.destroy();
  }
}
