// The adapter's roofline, measured with shaders/roofline.wgsl through the same API path as the model:
// streaming read bandwidth (best of the read variants), peak multiply-add rate, and the cost of one
// dispatch inside a command buffer. Each is the best of its timed runs: a ceiling to compare with,
// which other work on the machine can only lower.
import { readFileSync } from "node:fs";
import { defineKernel, KernelCall, type Kernels } from "../gpu/kernel.ts";
import { grid, Recorder } from "../gpu/recorder.ts";
import { randomFill } from "../ops/random-fill.ts";
import type { GpuTimer, MeasureOptions } from "../gpu/timer.ts";

/**
 * The read probes (VARIANT in roofline.wgsl) and the vec4<u32> words each invocation reads: few per
 * invocation where the layout relies on many invocations in flight (a GPU's way of hiding latency),
 * long runs where each invocation or SIMD group streams its own region (a CPU thread's way).
 */
export const READ_VARIANTS = {
  strided: { variant: 0, perLane: 16 },
  lane_contiguous: { variant: 1, perLane: 256 },
  octet: { variant: 2, perLane: 256 },
  block: { variant: 3, perLane: 64 },
} as const;
export type ReadVariant = keyof typeof READ_VARIANTS;
const FMA = 4;
const EMPTY = 5;

export const ROOFLINE = defineKernel({
  name: "roofline",
  shader: "roofline",
  workgroupSize: 64,
  overrides: { VARIANT: "u32" },
  bindings: { src: "read", out: "read_write" },
  uniforms: { n: "u32", per_lane: "u32", iters: "u32", magic: "u32" },
});
const WG = ROOFLINE.workgroupSize;
/** Never the xor of a reduction over the random fill in practice, and a NaN as f32 (FMA results are finite). */
const MAGIC = 0xffffffff;
/** The FMA probe's size: enough invocations to fill a large GPU, enough iterations to dwarf launch costs. */
const FMA_GROUPS = 4096;
const FMA_ITERS = 1024;
const FMA_FLOPS_PER_ITER = 64;

const MiB = 1 << 20;

export interface Roofline {
  /** Best streaming read bandwidth over the variants, GB/s (1e9 bytes). */
  read_gbps: number;
  read_variants_gbps: Record<ReadVariant, number>;
  /** Bytes streamed per measurement: several times the host's last-level cache (and any GPU's L2). */
  stream_bytes: number;
  peak_gflops: number;
  /** Device time of one dispatch of an empty kernel among many in one command buffer, microseconds. */
  dispatch_us: number;
}

/** The largest cache of CPU 0 (Linux sysfs), or undefined where that is not readable. */
export function lastLevelCacheBytes(): number | undefined {
  let best: number | undefined;
  for (let i = 0; ; i++) {
    let size: string;
    try {
      size = readFileSync(`/sys/devices/system/cpu/cpu0/cache/index${i}/size`, "utf8").trim();
    } catch {
      return best;
    }
    const m = /^(\d+)([KMG]?)$/.exec(size);
    if (m) {
      const bytes = Number(m[1]) * ({ "": 1, K: 1 << 10, M: MiB, G: 1 << 30 } as Record<string, number>)[m[2]];
      best = Math.max(best ?? 0, bytes);
    }
  }
}

/**
 * Four times the larger of the host's last-level cache and 64 MiB (GPU L2 caches are at most tens of
 * MiB), within [256 MiB, 2 GiB]: large enough that no cache holds the stream, small enough to allocate.
 */
export function defaultStreamBytes(): number {
  return Math.min(2048 * MiB, Math.max(256 * MiB, 4 * Math.max(64 * MiB, lastLevelCacheBytes() ?? 0)));
}

interface Probe {
  call: KernelCall;
  groups: number;
}

export async function measureRoofline(k: Kernels, timer: GpuTimer, opts: MeasureOptions & { streamBytes: number }): Promise<Roofline> {
  const device = k.device;
  const out = device.createBuffer({ label: "roofline out", size: 16, usage: GPUBufferUsage.STORAGE });
  const none = device.createBuffer({ label: "roofline no input", size: 16, usage: GPUBufferUsage.STORAGE });
  const calls: KernelCall[] = [];
  const probe = (src: GPUBuffer, words: number, groups: number, perLane = 0, iters = 0): Probe => {
    const call = new KernelCall(k, ROOFLINE, { src, out }, "roofline");
    call.uniforms.set({ n: words, per_lane: perLane, iters, magic: MAGIC });
    calls.push(call);
    return { call, groups };
  };
  const seconds = async (variant: number, probes: Probe[]) => {
    const pipeline = probes[0].call.pipeline(ROOFLINE, { overrides: { VARIANT: variant } });
    await pipeline.ready;
    const encode = (rec: Recorder) => {
      for (const { call, groups } of probes) rec.dispatch(pipeline, call, ...grid(groups));
    };
    return (await timer.measure(encode, opts)).best;
  };

  // The stream is split into chunks that each fit one binding, one dispatch per chunk.
  const chunkBytes = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize, 256 * MiB) / 65536) * 65536;
  const chunks = Math.max(1, Math.round(opts.streamBytes / chunkBytes));
  const streamBytes = chunks * chunkBytes;
  const words = chunkBytes / 16;
  const buffers: GPUBuffer[] = [];
  const read_variants_gbps = {} as Record<ReadVariant, number>;
  try {
    for (let i = 0; i < chunks; i++) {
      buffers.push(device.createBuffer({ label: `roofline stream ${i}`, size: chunkBytes, usage: GPUBufferUsage.STORAGE }));
      await fillRandom(k, buffers[i], chunkBytes / 4, i);
    }
    for (const name of Object.keys(READ_VARIANTS) as ReadVariant[]) {
      const { variant, perLane } = READ_VARIANTS[name];
      const probes = buffers.map((b) => probe(b, words, Math.ceil(words / (WG * perLane)), perLane));
      read_variants_gbps[name] = streamBytes / (await seconds(variant, probes)) / 1e9;
    }
  } finally {
    for (const b of buffers) b.destroy();
  }
  const fmaSeconds = await seconds(FMA, [probe(none, 0, FMA_GROUPS, 0, FMA_ITERS)]);
  const dispatchSeconds = await seconds(EMPTY, [probe(none, 0, 1)]);
  out.destroy();
  none.destroy();
  for (const c of calls) c.destroy();
  return {
    read_gbps: Math.max(...Object.values(read_variants_gbps)),
    read_variants_gbps,
    stream_bytes: streamBytes,
    peak_gflops: (FMA_GROUPS * WG * FMA_ITERS * FMA_FLOPS_PER_ITER) / fmaSeconds / 1e9,
    dispatch_us: dispatchSeconds * 1e6,
  };
}

/** Fills a buffer with random words on the GPU: data no driver can elide, at no host cost. */
async function fillRandom(k: Kernels, buffer: GPUBuffer, words: number, seed: number): Promise<void> {
  const rec = new Recorder(k.device);
  const call = await randomFill(k, rec, "roofline stream", buffer, { words, offset: 0, seed, scale: 1, center: 0, f32: true });
  rec.submit();
  await k.device.queue.onSubmittedWorkDone();
  call.destroy();
}
