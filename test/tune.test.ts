// Choosing kernel variants: names forced by R3GPU_KERNELS and --kernels (and refused when unknown or unsupported),
// the static defaults by adapter class, the tuning cache's key, the tuner on the embedded model (every variant
// checked, the fastest correct one kept, the choice cached so that a second load measures nothing, a time budget),
// a user's kernel (checked against today's kernel, the float64 references and the golden values, dropped when wrong,
// refused when it breaks its op's contract), and `r3gpu tune` and `r3gpu check` as a user runs them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { firstDivergence, runGoldenCheck } from "../src/check/golden.ts";
import { checkVariantFloat64 } from "../src/check/kernel-check.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { allVariants, choicePrecision, DEFAULT_KERNELS, parseKernelList, resolveKernels } from "../src/ops/kernel-variants.ts";
import { addUserKernel } from "../src/ops/user-kernel.ts";
import { GOLDEN_TOLERANCE, OP_SLOTS } from "../src/ops/variant.ts";
import { stepClasses, tuneKey, type TuneCache, type TuneKeyParts, type TuneRecord } from "../src/tune/cache.ts";
import { staticKernels } from "../src/tune/defaults.ts";
import { testGpu, testKernels } from "./gpu-helpers.ts";
import { embeddedModelDir, repoRoot } from "./shared-paths.ts";

const { device } = await testGpu();
const tiny = embeddedModelDir();
const QUICK = { runs: 1, minSeconds: 0.01 };

/** A tuning cache in memory that counts its writes. */
function memoryCache(): TuneCache & { records: Map<string, TuneRecord>; writes: number } {
  const records = new Map<string, TuneRecord>();
  return {
    where: "memory", records, writes: 0,
    async read(key) { return structuredClone(records.get(key)); },
    async write(key, record) { this.writes++; records.set(key, structuredClone(record)); },
  };
}

/** A device-like object with the given features, for choices that read nothing but features. */
const fakeDevice = (features: string[]) => ({ features: new Set(features) }) as unknown as GPUDevice;

test("R3GPU_KERNELS / --kernels lists: slot=variant pairs; a bad entry, slot or variant is named with the valid ones", () => {
  assert.deepEqual(parseKernelList("linear.decode=splitk, attention.decode=splitkv"), { "linear.decode": "splitk", "attention.decode": "splitkv" });
  assert.deepEqual(parseKernelList(""), {});
  assert.throws(() => parseKernelList("linear.decode=nope", "--kernels"), /--kernels: linear.decode has no variant "nope" \(it has rows, blocks, splitk, splitk_subgroup/);
  assert.throws(() => parseKernelList("matmul=rows"), /R3GPU_KERNELS: "matmul=rows" is not slot=variant; the slots are linear.vector, linear.decode, linear.prefill, attention.decode, attention.prefill, swiglu.decode, lm_head.decode/);
  assert.throws(() => parseKernelList("linear.decode"), /is not slot=variant/);
  assert.throws(() => parseKernelList("linear.decode=rows=rows"), /is not slot=variant/);
});

test("a variant the adapter cannot run is refused, naming the missing feature and the variants there are", () => {
  assert.throws(() => resolveKernels(fakeDevice([]), { "linear.decode": "splitk_subgroup" }),
    /linear.decode=splitk_subgroup: this adapter lacks subgroups; linear.decode has rows, blocks, splitk, splitk_subgroup \(needs subgroups\)/);
  assert.throws(() => resolveKernels(fakeDevice([]), { "attention.prefill": "flash" }), /no such kernel variant; attention.prefill has online, tiled/);
});

test("static defaults: today's kernels on a CPU adapter but blocks for linears of several rows; split-K, tiles and split-KV on a GPU, subgroups where it has them", () => {
  const all = ["subgroups", "shader-f16"];
  const cpu = { ...DEFAULT_KERNELS, "linear.decode": "blocks", "linear.prefill": "blocks" };
  assert.deepEqual(staticKernels(fakeDevice(all), { vendor: "mesa", description: "llvmpipe (LLVM 15.0.6, 256 bits)" }), cpu);
  assert.deepEqual(staticKernels(fakeDevice(all), { isFallbackAdapter: true }), cpu);
  assert.deepEqual(staticKernels(fakeDevice(all), { vendor: "nvidia", architecture: "hopper" }),
    { "linear.vector": "splitk_subgroup", "linear.decode": "splitk_subgroup", "linear.prefill": "tiled", "attention.decode": "splitkv", "attention.prefill": "tiled", "swiglu.decode": "splitk_subgroup",
      "lm_head.decode": "splitk_subgroup" });
  const apple = staticKernels(fakeDevice([]), { vendor: "apple", architecture: "metal-3" });
  assert.deepEqual([apple["linear.decode"], apple["swiglu.decode"], apple["lm_head.decode"]], ["splitk", "splitk", "splitk"]);
});

test("step classes: powers of two, decode rows at most 16, keys at most 1024", () => {
  assert.deepEqual(stepClasses({ maxBatch: 3, maxSeqLen: 400, maxTokens: 256 }), { decodeRows: 4, decodeKeys: 512, prefillRows: 256 });
  assert.deepEqual(stepClasses({ maxBatch: 64, maxSeqLen: 32768, maxTokens: 300 }), { decodeRows: 16, decodeKeys: 1024, prefillRows: 512 });
  assert.deepEqual(stepClasses({ maxBatch: 1, maxSeqLen: 1, maxTokens: 1 }), { decodeRows: 1, decodeKeys: 1, prefillRows: 1 });
});

test("the tuning key: everything a measurement depends on changes it; the order of features does not", async () => {
  const parts: TuneKeyParts = {
    adapter: { vendor: "nvidia", architecture: "hopper", description: "H100" }, features: ["subgroups", "shader-f16"],
    limits: { maxStorageBufferBindingSize: 1 << 30 }, shape: { hiddenSize: 896, maxBatch: 1 }, dtype: "BF16", precision: "f32", fixed: {},
  };
  const key = await tuneKey(parts);
  assert.match(key, /^[0-9a-f]{64}$/);
  assert.equal(await tuneKey({ ...parts, features: ["shader-f16", "subgroups"] }), key);
  const changed: Partial<TuneKeyParts>[] = [
    { adapter: { ...parts.adapter, description: "H200" } }, { features: ["shader-f16"] }, { limits: { maxStorageBufferBindingSize: 1 << 27 } },
    { shape: { hiddenSize: 896, maxBatch: 8 } }, { dtype: "F32" }, { precision: "f16" }, { fixed: { "linear.decode": "splitk" } },
  ];
  for (const c of changed) assert.notEqual(await tuneKey({ ...parts, ...c }), key, `${Object.keys(c)[0]} does not change the key`);
});

test("the tuner on the embedded model: every variant checked, the fastest correct one kept, cached, golden values met", async () => {
  const cache = memoryCache();
  const load = (tune: object, kernels = {}) => Qwen2Model.load(device, nodeModelDir(tiny), { maxSeqLen: 400, maxBatch: 4, kernels, tune: { cache, measure: QUICK, ...tune } });
  const model = await load({});
  try {
    const report = model.tuneReport!;
    assert.equal(report.source, "measured");
    const results = report.results!;
    for (const slot of OP_SLOTS) {
      const rows = results.filter((r) => r.op === slot);
      assert.deepEqual(rows.map((r) => r.variant), allVariants().filter((v) => v.slot === slot).map((v) => v.name), `${slot}: every variant has a row`);
      const reference = rows.find((r) => r.variant === DEFAULT_KERNELS[slot])!;
      assert.equal(reference.error, 0, `${slot}: today's kernel against itself`);
      for (const r of rows) {
        if (!r.supported) assert.match(r.note!, /^needs /);
        else if (r.precision === "f16") assert.equal(r.correct, null, `${slot}=${r.variant}: f16 measured without --precision f16`);
        else {
          assert.equal(r.correct, true, `${slot}=${r.variant}: ${r.note}`);
          assert.ok(r.error! <= r.tolerance && r.seconds! > 0 && r.gbps! > 0 && r.gflops! > 0, `${slot}=${r.variant}: ${JSON.stringify(r)}`);
        }
      }
      const chosen = rows.filter((r) => r.chosen);
      assert.equal(chosen.length, 1, `${slot}: one chosen`);
      const fastest = Math.min(...rows.filter((r) => r.correct).map((r) => r.seconds!));
      assert.equal(chosen[0].seconds, fastest, `${slot}: the chosen one is the fastest correct one`);
      assert.equal(model.kernelChoice[slot], chosen[0].variant);
    }
    const golden = await runGoldenCheck(model, nodeModelDir(tiny));
    assert.ok(golden.ok, `with ${JSON.stringify(model.kernelChoice)}: ${firstDivergence(golden)}`);
  } finally {
    model.destroy();
  }
  assert.equal(cache.writes, 1);

  // A second load of the same shape measures nothing; so does one whose context is in the same class (up to 512).
  const again = await load({});
  assert.equal(again.tuneReport!.source, "cache");
  assert.deepEqual(again.kernelChoice, model.kernelChoice);
  again.destroy();
  const near = await Qwen2Model.load(device, nodeModelDir(tiny), { maxSeqLen: 500, maxBatch: 3, tune: { cache, measure: QUICK } });
  assert.equal(near.tuneReport!.source, "cache");
  near.destroy();
  assert.equal(cache.writes, 1);

  // A forced slot is not measured, and the others are measured again (against the forced one).
  const forced = await load({}, { "attention.decode": "online" });
  assert.equal(forced.tuneReport!.source, "measured");
  assert.ok(!forced.tuneReport!.results!.some((r) => r.op === "attention.decode"));
  assert.equal(forced.kernelChoice["attention.decode"], "online");
  forced.destroy();
  assert.equal(cache.writes, 2);

  // A record naming a variant this build does not have is measured again.
  for (const r of cache.records.values()) r.choice["linear.decode"] = "gone";
  const stale = await load({});
  assert.equal(stale.tuneReport!.source, "measured");
  assert.notEqual(stale.kernelChoice["linear.decode"], "gone");
  stale.destroy();

  // A spent budget keeps today's kernels and says why each other variant was not measured.
  const bounded = await load({ refresh: true, budgetSeconds: 0 });
  assert.deepEqual(bounded.kernelChoice, DEFAULT_KERNELS);
  for (const r of bounded.tuneReport!.results!.filter((r) => r.supported && r.precision === "f32" && r.variant !== DEFAULT_KERNELS[r.op])) {
    assert.match(r.note!, /skipped: the tuning budget of 0 s was spent/, `${r.op}=${r.variant}`);
  }
  bounded.destroy();
});

test("a context shorter than a prompt chunk: attention at prefill is measured over the context, not past the cache", async () => {
  const model = await Qwen2Model.load(device, nodeModelDir(tiny), { maxSeqLen: 48, maxBatch: 2, tune: { measure: QUICK } });
  try {
    const rows = model.tuneReport!.results!.filter((r) => r.op === "attention.prefill" && r.supported);
    assert.ok(rows.length >= 2 && rows.every((r) => r.correct && r.step.rows === 48 && r.step.keys === 48), JSON.stringify(rows));
    const layers = model.config.numLayers;
    assert.deepEqual(model.tuneReport!.results!.filter((r) => r.op === "attention.decode").map((r) => r.step), [{ rows: 2, keys: 48, layers }, { rows: 2, keys: 48, layers }]);
  } finally {
    model.destroy();
  }
});

test("--precision f16 lets f16 variants compete at their stated tolerance; a model choosing one meets the f16 golden tolerance", { skip: !device.features.has("shader-f16") && "no shader-f16" }, async () => {
  const model = await Qwen2Model.load(device, nodeModelDir(tiny), { maxSeqLen: 400, kernels: { "linear.prefill": "tiled_f16" }, tune: { precision: "f16", measure: QUICK } });
  try {
    const row = model.tuneReport!.results!.find((r) => r.op === "linear.decode" && r.variant === "rows")!;
    assert.equal(row.correct, true);
    const { precision, tolerance, f16 } = choicePrecision(model.kernelChoice);
    assert.deepEqual([precision, tolerance, f16], ["f16", GOLDEN_TOLERANCE.f16, ["linear.prefill=tiled_f16"]]);
    const report = await runGoldenCheck(model, nodeModelDir(tiny), { tolerance });
    assert.ok(report.ok, firstDivergence(report));
    assert.ok(report.rows.every((r) => r.tolerance === GOLDEN_TOLERANCE.f16));
  } finally {
    model.destroy();
  }
});

// Run as a user runs it, in a child with its own cache folder.
function r3gpu(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(repoRoot, "bin", "r3gpu.js"), ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
  let stdout = "", stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s) => (stderr += s));
  return new Promise((done) => child.on("close", (code) => done({ code, stdout, stderr })));
}

test("r3gpu check: R3GPU_KERNELS and --kernels force variants (the flag winning); f16 ones are held to their printed tolerance", async () => {
  const forced = await r3gpu(["check", tiny, "--no-tune", "--kernels", "linear.prefill=tiled"], { R3GPU_KERNELS: "attention.decode=splitkv,linear.prefill=rows" });
  assert.equal(forced.code, 0, forced.stdout + forced.stderr);
  assert.match(forced.stdout, /kernels: linear.vector=rows, linear.decode=blocks, linear.prefill=tiled, attention.decode=splitkv, attention.prefill=online, swiglu.decode=separate, lm_head.decode=separate\n/);
  assert.match(forced.stdout, /tolerance: max abs error <= 0.0001 x max\|ref\| per tensor\n/);
  assert.match(forced.stdout, /PASS/);
  if (device.features.has("shader-f16")) {
    const half = await r3gpu(["check", tiny, "--no-tune", "--kernels", "linear.prefill=tiled_f16"]);
    assert.equal(half.code, 0, half.stdout + half.stderr);
    assert.match(half.stdout, /tolerance: max abs error <= 0.01 x max\|ref\| per tensor \(the f16 tolerance: linear.prefill=tiled_f16 computes in half precision\)/);
  }
  const bad = await r3gpu(["check", tiny, "--kernels", "linear.decode=nope"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--kernels: linear.decode has no variant "nope" \(it has rows, blocks, splitk, splitk_subgroup/);
  const badEnv = await r3gpu(["check", tiny], { R3GPU_KERNELS: "attention=online" });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /R3GPU_KERNELS: "attention=online" is not slot=variant/);
});

test("r3gpu tune with the README's worked example kernel: every variant in the table and the JSON, the example checked three ways", async () => {
  const dir = await mkdtemp(join(tmpdir(), "r3gpu-tune-"));
  try {
    const json = join(dir, "tune.json");
    const run = await r3gpu(["tune", tiny, "--kernel", "linear.decode=examples/kernels/linear_naive.wgsl", "--json", json], { R3GPU_CACHE_DIR: dir });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const report = JSON.parse(await readFile(json, "utf8"));
    const keys = ["op", "variant", "precision", "supported", "correct", "chosen", "seconds", "gbps", "gflops", "roofline_fraction"];
    for (const v of report.variants) for (const k of keys) assert.ok(k in v, `${v.op}=${v.variant} has no ${k}`);
    const mine = report.variants.find((v: any) => v.variant === "linear_naive");
    assert.deepEqual([mine.op, mine.supported, mine.correct], ["linear.decode", true, true]);
    assert.ok(mine.seconds > 0 && mine.roofline_fraction > 0);
    for (const slot of OP_SLOTS) assert.equal(report.variants.filter((v: any) => v.op === slot && v.chosen).length, 1, slot);
    assert.ok(report.float64.length >= 6 && report.float64.every((c: any) => c.ok), JSON.stringify(report.float64));
    assert.deepEqual(report.golden.map((g: any) => [g.model, g.ok]), [["tiny-qwen2", true]]);
    assert.equal(run.stdout.match(/^golden .* PASS/gm)?.length, 1, run.stdout);
    assert.match(run.stdout, /linear\.decode\s+linear_naive\s+f32\s+yes/);
    // The choice is kept: the cache folder has one record, and the next load takes it.
    assert.equal((await readdir(join(dir, "tune"))).filter((f) => f.endsWith(".json")).length, 1);
    const check = await r3gpu(["check", tiny], { R3GPU_CACHE_DIR: dir });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const chosen = Object.entries(report.choice).map(([s, v]) => `${s}=${v}`).join(", ");
    assert.ok(check.stdout.includes(`kernels: ${chosen}`), check.stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("r3gpu tune with a wrong kernel: dropped by the tuner, failed by the float64 and golden checks, exit 1", async () => {
  const dir = await mkdtemp(join(tmpdir(), "r3gpu-tune-"));
  try {
    const naive = await readFile(join(repoRoot, "examples", "kernels", "linear_naive.wgsl"), "utf8");
    const wrong = join(dir, "linear_off.wgsl");
    // Off by 1e-3 of each output: small, and far beyond f32 rounding.
    await writeFile(wrong, naive.replace("var v = acc.x + acc.y + b;", "var v = (acc.x + acc.y + b) * 1.001;"));
    const run = await r3gpu(["tune", tiny, "--kernel", `linear.prefill=${wrong}`, "--json", join(dir, "t.json")], { R3GPU_CACHE_DIR: dir });
    assert.equal(run.code, 1, run.stdout + run.stderr);
    const report = JSON.parse(await readFile(join(dir, "t.json"), "utf8"));
    const mine = report.variants.find((v: any) => v.variant === "linear_off");
    assert.deepEqual([mine.correct, mine.chosen], [false, false]);
    assert.match(mine.note, /^dropped: error .* > 0.0001/);
    assert.ok(report.float64.every((c: any) => !c.ok), JSON.stringify(report.float64));
    assert.equal(report.golden[0].ok, false);
    assert.match(run.stdout, /golden tiny-qwen2 with linear.prefill=linear_off: FAIL/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// Last: a user's kernel joins the variant lists for the rest of the process.
test("a user's kernel: refused when it breaks its op's contract, every departure named; checked against float64 in both linear slots", async () => {
  const naive = await readFile(join(repoRoot, "examples", "kernels", "linear_naive.wgsl"), "utf8");
  assert.throws(() => addUserKernel("linear.decode", "no_bias", naive.replace(/#if HAS_BIAS\n@group[^\n]*\n#endif\n/, ""), "no_bias.wgsl"),
    /no_bias.wgsl does not keep its op's contract:\n {2}.*bias/);
  assert.throws(() => addUserKernel("matmul" as never, "x", naive, "x.wgsl"), /--kernel matmul=x.wgsl: no such op slot/);
  assert.throws(() => addUserKernel("swiglu.decode", "x", naive, "x.wgsl"), /--kernel swiglu.decode=x.wgsl: user kernels are taken for the linear\.\* and attention\.\* slots/);
  assert.throws(() => addUserKernel("lm_head.decode", "x", naive, "x.wgsl"), /--kernel lm_head.decode=x.wgsl: user kernels are taken/);
  const kernels = await testKernels();
  const cfg = (await Qwen2Model.load(device, nodeModelDir(tiny), { maxSeqLen: 16 }));
  const config = cfg.config;
  cfg.destroy();
  for (const slot of ["linear.decode", "linear.prefill"] as const) {
    const v = addUserKernel(slot, `naive_${slot.split(".")[1]}`, naive, "linear_naive.wgsl");
    const cases = await checkVariantFloat64(kernels, v, config);
    assert.ok(cases.length >= 4 && cases.every((c) => c.ok && c.maxRatio! <= 1), JSON.stringify(cases));
  }
});
