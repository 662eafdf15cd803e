// Text tables for `r3gpu bench` and `r3gpu profile`.
import type { KernelRow, LoadFigures, StepProfile } from "./model.ts";
import type { PeerFigures, PeerReports } from "./peers.ts";
import { TARGETS, type AdapterReport, type BenchReport, type ModelReport, type ProfileReport } from "./run.ts";

const GB = 1e9;

function f(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}

/** Three significant digits at any magnitude (times span microseconds to minutes). */
function g(x: number): string {
  if (!Number.isFinite(x) || x === 0) return String(x);
  return x.toFixed(Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x)))));
}

function table(header: string[], rows: string[][], leftColumns = 1): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => "  " + cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), ...rows.map(line)];
}

function adapterLine(a: AdapterReport): string {
  return `adapter   ${[a.vendor, a.architecture].filter(Boolean).join(" ")}: ${a.description} [${a.backend}]; kernel timing: ${a.timing}`;
}

function stepTitle(p: StepProfile): string {
  return p.step.T === 1 ? `decode step (T=1, pos0=${p.step.pos0})` : `prefill step (T=${p.step.T}, pos0=${p.step.pos0})`;
}

/** Per-kernel rows; the roofline column appears where the run measured a roofline (bench, not profile). */
function kernelTable(p: Omit<StepProfile, "rows"> & { rows: (KernelRow & { roofline_fraction?: number })[] }): string[] {
  const withFraction = p.rows.every((r) => r.roofline_fraction !== undefined);
  const header = ["kernel", "family", "calls", "disp", "ms/call", "GFLOP/s", "GB/s", ...(withFraction ? ["roofline"] : []), "share"];
  const rows = p.rows.map((r) => [
    r.name, r.family, String(r.calls), String(r.dispatches_per_call), g(r.seconds * 1e3), g(r.gflops), g(r.gbps),
    ...(withFraction ? [f(r.roofline_fraction!)] : []), `${f((100 * r.calls * r.seconds) / p.kernel_seconds, 1)}%`,
  ]);
  return table(header, rows, 2);
}

function stepSection(p: Parameters<typeof kernelTable>[0]): string[] {
  return ["", `  kernels of a ${stepTitle(p)}, each timed alone: ${g(p.kernel_seconds * 1e3)} ms in all`, ...kernelTable(p)];
}

/** Kernel time by family, beside the wall time of the same step run by the model. */
function familyTable(profiles: (StepProfile & { wall_s: number })[]): string[] {
  const families = [...new Set(profiles.flatMap((p) => Object.keys(p.families)))];
  const header = ["family", ...profiles.flatMap((p) => [p.step.T === 1 ? "decode ms" : "prefill ms", "share"])];
  const rows = families.map((fam) => [fam, ...profiles.flatMap((p) => {
    const x = p.families[fam];
    return x ? [g(x.seconds * 1e3), `${f(100 * x.share, 1)}%`] : ["-", "-"];
  })]);
  rows.push(["sum of kernels", ...profiles.flatMap((p) => [g(p.kernel_seconds * 1e3), ""])]);
  rows.push(["the model's own step (wall)", ...profiles.flatMap((p) => [g(p.wall_s * 1e3), ""])]);
  return table(header, rows);
}

function loadText(load: LoadFigures): string {
  return load.source === "random"
    ? `random BF16 weights generated on the GPU in ${f(load.seconds)} s`
    : `loaded in ${f(load.seconds)} s (${f(load.file_bytes! / GB)} GB from disk, ${f(load.file_gbps!)} GB/s)`;
}

function modelLines(shape: string, m: ModelReport): string[] {
  const lines = [
    "",
    `${shape}: ${loadText(m.load)}; weights ${f(m.load.weight_bytes / GB)} GB, GPU buffers ${f(m.gpu_buffer_bytes / GB)} GB, ` +
      `host peak RSS ${f(m.host_peak_rss_bytes / GB)} GB`,
    `  kernel variants (${m.kernel_variants_from}): ${Object.entries(m.kernel_variants).map(([slot, v]) => `${slot}=${v}`).join(", ")}`,
    ...table(["end to end", "tok/s", "time to first token s", "GFLOP/s", "of peak"],
      m.prefill.map((p) => [`prefill ${p.tokens} tokens`, g(p.tok_s), g(p.ttft_s), g(p.gflops), f(p.fraction_of_peak, 3)])),
    ...table(["", "tok/s", "s/token", "floor s", "GB/token", "dispatches", "x floor"],
      m.decode.map((d) => [`decode at context ${d.context}`, g(d.tok_s), g(d.s_per_token), g(d.floor_s), f(d.bytes_per_token / GB, 3),
        String(d.dispatches_per_token), f(d.vs_floor)])),
    `  decode_vs_floor ${f(m.decode_vs_floor)} (target <= ${TARGETS.decode_vs_floor}), ` +
      `prefill_fraction_of_peak ${f(m.prefill_fraction_of_peak, 3)} (target >= ${TARGETS.prefill_fraction_of_peak}); ` +
      `from the ${m.headline.prompt_tokens}-token prompt and the decode after it`,
  ];
  for (const s of m.skipped) lines.push(`  skipped: ${s}`);
  const modes = Object.entries(m.quant);
  if (modes.length > 1 || m.quant_mode !== "bf16") {
    const ratio = (x: number | null) => (x === null ? "-" : f(x));
    lines.push(`  weight modes (the figures above are ${m.quant_mode}'s; each mode loaded and measured in turn):`,
      ...table(["mode", "weights GB", "GB/token", "decode tok/s", "x bf16", "x floor", "prefill tok/s", "x bf16"],
        modes.map(([mode, q]) => [mode, f(q.weight_bytes / GB, 3), f(q.bytes_per_token / GB, 3), g(q.decode_tok_s), ratio(q.decode_vs_bf16),
          f(q.decode_vs_floor), g(q.prefill_tok_s), ratio(q.prefill_vs_bf16)])));
  }
  if (m.batched) {
    const one = m.batched.decode.find((d) => d.batch === 1);
    lines.push(`  KV cache: ${m.max_batch} slots, ${f(m.kv_cache_bytes / GB, 3)} GB`,
      ...table(["batched decode", "sequences", "s/step", "tok/s (all)", "x batch 1"],
        m.batched.decode.map((d) => [`at context ${d.context}`, String(d.batch), g(d.s_per_step), g(d.tok_s), one ? f(d.tok_s / one.tok_s) : "-"])));
    const p = m.batched.prefill;
    lines.push(`  packed prefill: ${p.documents} documents, ${p.tokens} tokens: ${g(p.packed_tok_s)} tok/s packed, ` +
      `${g(p.one_at_a_time_tok_s)} tok/s one at a time (x${f(p.packed_tok_s / p.one_at_a_time_tok_s)})`);
  }
  lines.push(...stepSection(m.kernels.decode), ...stepSection(m.kernels.prefill));
  // The kernel tables are at the first prompt's shapes, as are the first end-to-end figures.
  lines.push("", ...familyTable([{ ...m.kernels.decode, wall_s: m.decode[0].s_per_token }, { ...m.kernels.prefill, wall_s: m.prefill[0].ttft_s }]));
  return lines;
}

function rate(x: number | null): string {
  return x === null ? "-" : g(x);
}

/** One row per peer run; runs that timed out or failed are explained below the table. */
function peerLines(peers: PeerReports): string[] {
  const runs: [string, PeerFigures][] = Object.values(peers).flatMap((byShape) => Object.entries(byShape));
  if (runs.length === 0) return [];
  const rows = runs.map(([shape, p]) => [
    shape, `llama.cpp ${p.backend}`, p.device ?? "-", String(p.prompt_tokens), rate(p.prefill_tok_s), g(p.r3gpu_prefill_tok_s),
    p.ratio_prefill === null ? "-" : f(p.ratio_prefill), rate(p.decode_tok_s), g(p.r3gpu_decode_tok_s),
    p.ratio_decode === null ? "-" : f(p.ratio_decode), p.warmup_s === null ? "-" : g(p.warmup_s),
  ]);
  const notes = runs.filter(([, p]) => p.timed_out || p.error !== undefined).map(([shape, p]) =>
    `  llama.cpp ${p.backend} on ${shape}: ${p.error !== undefined ? `failed: ${p.error}` : "timed out"}; the rates shown are what it reached`);
  return [
    "",
    "peers: the same weights (GGUF F16, or Q8_0/Q4_0 for --quant q8/q4 first), the same prompt, as many decode steps; " +
      "ratio = r3gpu tok/s / peer tok/s (> 1: r3gpu is faster)",
    ...table(["shape", "peer", "device", "prompt", "prefill tok/s", "r3gpu", "ratio", "decode tok/s", "r3gpu", "ratio", "warm-up s"], rows, 3),
    ...notes,
  ];
}

export function formatBench(r: BenchReport): string {
  const rf = r.roofline;
  const variants = Object.entries(rf.read_variants_gbps).map(([k, v]) => `${k} ${g(v)}`).join(", ");
  return [
    `${r.command}, ${r.date}`,
    `host      ${r.host.cpu}, ${r.host.cores} cores, ${f(r.host.memory_bytes / GB, 1)} GB; load average ${f(r.host.load_average[0])} at the start`,
    adapterLine(r.adapter),
    `roofline  read ${g(rf.read_gbps)} GB/s (best of ${variants}; ${(rf.stream_bytes / 2 ** 20).toFixed(0)} MiB streamed), ` +
      `peak ${g(rf.peak_gflops)} GFLOP/s (f32 multiply-add), ${g(rf.dispatch_us)} us per dispatch`,
    ...Object.entries(r.models).flatMap(([shape, m]) => modelLines(shape, m)),
    ...peerLines(r.peers),
  ].join("\n");
}

export function formatProfile(p: ProfileReport): string {
  return [
    `r3gpu profile ${p.shape}: ${loadText(p.load)}`,
    adapterLine(p.adapter),
    ...stepSection(p.decode),
    ...stepSection(p.prefill),
    "",
    ...familyTable([p.decode, p.prefill]),
  ].join("\n");
}
