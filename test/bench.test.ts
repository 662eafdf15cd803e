// The benchmark harness on the embedded tiny model, so that it cannot rot: `bench --quick` writes a
// complete report whose figures are finite and positive, a second weight mode (q4) is measured beside bf16,
// llama.cpp runs beside it as a peer, its text tables render, and `profile` runs. No time is ever asserted
// (machines vary); bench/NOTES.md has measured figures.
import { spawn } from "node:child_process";
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGUF_CACHE_DIR, type PeerFigures } from "../src/bench/peers.ts";
import { formatBench } from "../src/bench/report.ts";
import type { BenchReport } from "../src/bench/run.ts";
import { run } from "../src/cli/main.ts";
import { embeddedModelDir } from "./shared-paths.ts";

function assertPositive(x: unknown, what: string): void {
  assert.ok(typeof x === "number" && Number.isFinite(x) && x > 0, `${what} should be a finite positive number, got ${x}`);
}

/** Walks the whole report: every number in it must be finite and non-negative. */
function assertFiniteTree(v: unknown, path: string): void {
  if (typeof v === "number") assert.ok(Number.isFinite(v) && v >= 0, `${path} = ${v}`);
  else if (Array.isArray(v)) v.forEach((x, i) => assertFiniteTree(x, `${path}[${i}]`));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) assertFiniteTree(x, `${path}.${k}`);
}

/** A peer's run on the embedded model, against r3gpu's figures for the same prompt. */
function assertPeer(p: PeerFigures | undefined, backend: string, m: BenchReport["models"][string]): void {
  assert.ok(p, `no ${backend} run`);
  assert.equal(p.backend, backend);
  assert.equal(p.prompt_tokens, m.prefill[0].tokens, "the bench's own prompt");
  assert.ok(p.gguf.startsWith(GGUF_CACHE_DIR) && existsSync(p.gguf), `GGUF kept in the cache: ${p.gguf}`);
  assert.equal(p.r3gpu_prefill_tok_s, m.prefill[0].tok_s);
  assert.equal(p.r3gpu_decode_tok_s, m.decode[0].tok_s);
  assert.equal(typeof p.timed_out, "boolean");
  assert.equal(p.load_average.length, 3);
  if (p.timed_out || p.error !== undefined) return;
  assert.equal(p.decode_steps, 4, "as many decode steps as r3gpu's --quick run");
  for (const key of ["prefill_tok_s", "decode_tok_s", "load_s", "warmup_s"] as const) assertPositive(p[key], `${backend}.${key}`);
  assert.equal(p.ratio_prefill, p.r3gpu_prefill_tok_s / p.prefill_tok_s!);
  assert.equal(p.ratio_decode, p.r3gpu_decode_tok_s / p.decode_tok_s!);
}

test("bench --quick --peer llama.cpp --json on the embedded model: report structure, finite positive figures", async () => {
  const shape = embeddedModelDir();
  const dir = mkdtempSync(join(tmpdir(), "r3gpu-bench-"));
  const file = join(dir, "bench.json");
  let report: BenchReport;
  try {
    // --check fails on a slow adapter; it is run for its code path, and only the JSON is checked. llama.cpp's
    // first Vulkan run on a machine compiles its shaders for minutes: the short limit bounds the test.
    const code = await run(["bench", "--quick", "--shape", shape, "--json", file, "--check", "--peer", "llama.cpp", "--peer-timeout", "30", "--quant", "bf16,q4"]);
    assert.ok(code === 0 || code === 1, `exit code ${code}`);
    report = JSON.parse(readFileSync(file, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assertFiniteTree(report, "report");

  assert.equal(report.command, `r3gpu bench --quick --shape ${shape} --json ${file} --check --peer llama.cpp --peer-timeout 30 --quant bf16,q4`);
  assert.equal(report.quick, true);
  for (const key of ["vendor", "architecture", "description", "backend"] as const) assert.equal(typeof report.adapter[key], "string");
  assert.ok(["timestamp-query", "wall-clock"].includes(report.adapter.timing));

  const rf = report.roofline;
  for (const key of ["read_gbps", "peak_gflops", "dispatch_us", "stream_bytes"] as const) assertPositive(rf[key], `roofline.${key}`);
  assert.deepEqual(Object.keys(rf.read_variants_gbps).sort(), ["block", "lane_contiguous", "octet", "strided"]);
  assert.equal(rf.read_gbps, Math.max(...Object.values(rf.read_variants_gbps)));

  const m = report.models[shape];
  assert.ok(m, `models["${shape}"] missing`);
  for (const key of ["decode_tok_s", "prefill_tok_s", "decode_vs_floor", "prefill_fraction_of_peak", "gpu_buffer_bytes", "host_peak_rss_bytes"] as const) {
    assertPositive(m[key], `models.${key}`);
  }
  assert.equal(m.load.source, "files");
  for (const key of ["seconds", "weight_bytes", "file_bytes", "file_gbps"] as const) assertPositive(m.load[key], `load.${key}`);
  assert.ok(m.gpu_buffer_bytes >= m.load.weight_bytes, "GPU buffers include the weights");

  assert.deepEqual(m.prefill.map((p) => p.tokens), [128]);
  for (const p of m.prefill) for (const key of ["ttft_s", "tok_s", "gflops", "fraction_of_peak"] as const) assertPositive(p[key], `prefill.${key}`);
  assert.equal(m.decode.length, 1);
  assert.equal(m.decode[0].context, 128);
  for (const key of ["s_per_token", "tok_s", "bytes_per_token", "dispatches_per_token", "floor_s", "vs_floor"] as const) {
    assertPositive(m.decode[0][key], `decode.${key}`);
  }
  assert.ok(m.skipped.some((s) => s.includes("1024")), "a quick run says that the 1024-token measurements were skipped");
  assert.deepEqual(m.headline, { prompt_tokens: 128, context: 128 });

  for (const [name, step] of Object.entries(m.kernels)) {
    const families = new Set(step.rows.map((r) => r.family));
    for (const f of ["embedding", "rmsnorm", "linear", "attention", "lm_head"]) assert.ok(families.has(f), `kernels.${name} has a ${f} row`);
    assert.equal(step.rows.find((r) => r.family === "attention")!.calls, m.config.numLayers, "one attention row, called once per layer");
    for (const r of step.rows) {
      assertPositive(r.seconds, `${name} ${r.name} seconds`);
      assertPositive(r.bytes, `${name} ${r.name} bytes`);
      assertPositive(r.roofline_fraction, `${name} ${r.name} roofline_fraction`);
    }
    assertPositive(step.kernel_seconds, `kernels.${name}.kernel_seconds`);
    const shares = Object.values(step.families).reduce((s, f) => s + f.share, 0);
    assert.ok(Math.abs(shares - 1) < 1e-9, `family shares sum to 1 (${shares})`);
  }

  // Each weight mode loaded and measured; the report's own figures are the first mode's.
  assert.equal(m.quant_mode, "bf16");
  assert.deepEqual(Object.keys(m.quant), ["bf16", "q4"]);
  const { bf16, q4 } = m.quant as Required<typeof m.quant>;
  assert.equal(bf16.decode_tok_s, m.decode_tok_s);
  assert.equal(bf16.weight_bytes, m.load.weight_bytes);
  assert.equal(bf16.decode_vs_bf16, 1);
  for (const key of ["weight_bytes", "bytes_per_token", "decode_tok_s", "prefill_tok_s", "decode_vs_floor"] as const) assertPositive(q4[key], `quant.q4.${key}`);
  assert.equal(q4.decode_vs_bf16, q4.decode_tok_s / bf16.decode_tok_s);
  assert.equal(q4.prefill_vs_bf16, q4.prefill_tok_s / bf16.prefill_tok_s);
  // The tiny model is mostly its tied 151936 x 64 table, Q8 in both modes (8.5 bits a weight against 16): about 0.53x.
  assert.ok(q4.weight_bytes < 0.6 * bf16.weight_bytes, `q4 ${q4.weight_bytes} bytes vs bf16 ${bf16.weight_bytes}`);
  assert.ok(q4.bytes_per_token < bf16.bytes_per_token);

  assert.deepEqual(Object.keys(report.peers).sort(), ["llamacpp_cpu", "llamacpp_vulkan"]);
  assertPeer(report.peers.llamacpp_vulkan?.[shape], "vulkan", m);
  // The CPU backend needs nothing but the prebuilt binary, so it must finish.
  const cpu = report.peers.llamacpp_cpu?.[shape];
  assertPeer(cpu, "cpu", m);
  assert.equal(cpu!.error, undefined, cpu!.error);
  assert.equal(cpu!.timed_out, false);

  const text = formatBench(report);
  assert.match(text, /roofline\s+read/);
  assert.match(text, /llama\.cpp cpu/);
  assert.match(text, /weight modes/);
});

test("bench and profile are wired into the CLI", async () => {
  assert.equal(await run(["bench", "--shape", "no-such-shape-or-folder"]), 2);
  assert.equal(await run(["bench", "--bogus"]), 2);
  assert.equal(await run(["bench", "--peer", "no-such-peer"]), 2);
  assert.equal(await run(["bench", "--peer", "llama.cpp", "--peer-timeout", "0"]), 2);
  assert.equal(await run(["profile"]), 2);
  assert.equal(await run(["profile", embeddedModelDir(), "--tokens", "0"]), 2);
  assert.equal(await run(["profile", embeddedModelDir(), "--tokens", "16"]), 0);
});

// `npm run bench:linear`, as a user runs it: every variant of the slot at a small odd shape, each one's output within
// float32 rounding of the first's of its dtype (a check of the variants against one another, beside the float64
// references of test/kernels-*-linear.test.ts), two dtypes in one run, and bad flags refused by name.
test("bench:linear compares a slot's variants at one shape; a bad flag is refused naming it", async () => {
  const script = join(import.meta.dirname, "..", "bench", "linear-variants.js");
  const go = (args: string[]) => new Promise<{ code: number | null; out: string }>((done) => {
    const child = spawn(process.execPath, [script, ...args]);
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (code) => done({ code, out }));
  });
  for (const [m, dtypes] of [["3", ["BF16"]], ["40", ["Q4", "BF16"]]] as const) {
    const { code, out } = await go(["--k", "170", "--n", "70", "--m", m, "--dtype", dtypes.join(","), "--layers", "1", "--rounds", "1"]);
    assert.equal(code, 0, out);
    const rows = out.split("\n").filter((l) => / ms .* diff /.test(l));
    for (const dtype of dtypes) {
      for (const variant of ["rows", "blocks"]) assert.ok(rows.some((l) => new RegExp(`^${dtype} +${variant} `).test(l)), `${dtype} ${variant}:\n${out}`);
    }
    for (const l of rows) assert.ok(Number(/diff (\S+)/.exec(l)![1]) < 1e-5, l);
  }
  const bad = await go(["--k", "171"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.out, /--k 171: the linear kernels take an even K/);
  const badType = await go(["--dtype", "BF16,Q3"]);
  assert.notEqual(badType.code, 0);
  assert.match(badType.out, /--dtype Q3: one of BF16, F16, F32, Q8, Q4/);
});
