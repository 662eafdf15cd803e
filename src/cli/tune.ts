// `r3gpu tune`: the kernel workbench. Every variant of every op slot, measured at a model's own shapes on this
// adapter: time, GB/s, GFLOP/s, the fraction of the roofline measured in the same run, correct or not, chosen or not;
// a kernel of the user's own (--kernel SLOT=FILE.wgsl) checked against today's kernel, the float64 references and the
// golden values, and timed beside the built-ins. The choice is written to the tuning cache, so the next load uses it.
import { readFile, writeFile } from "node:fs/promises";
import { basename, extname, resolve } from "node:path";
import { defaultStreamBytes, measureRoofline } from "../bench/roofline.ts";
import { openModel } from "../bench/model.ts";
import { firstDivergence, runGoldenCheck } from "../check/golden.ts";
import { checkVariantFloat64 } from "../check/kernel-check.ts";
import { describeAdapter } from "../gpu/device.ts";
import { Kernels } from "../gpu/kernel.ts";
import { nodeGpu } from "../gpu/node.ts";
import { GpuTimer } from "../gpu/timer.ts";
import { readJson } from "../io/files.ts";
import { nodeModelDir } from "../io/node.ts";
import { Qwen2Model } from "../model/qwen2.ts";
import { allVariants } from "../ops/kernel-variants.ts";
import { addUserKernel } from "../ops/user-kernel.ts";
import type { OpSlot } from "../ops/variant.ts";
import { fsTuneCache } from "../tune/cache-fs.ts";
import type { VariantResult } from "../tune/tuner.ts";
import { UsageError } from "./args.ts";
import type { TuneArgs } from "./commands.ts";
import { Progress } from "./progress.ts";

/** The embedded model, whose golden values every user kernel is checked against (dist/src/cli/ is three below the root). */
const EMBEDDED = new URL("../../../models/tiny-qwen2/", import.meta.url).pathname;

export async function tune({ positionals, flags }: TuneArgs): Promise<number> {
  const shape = flags.shape ?? positionals.MODEL_DIR!;
  const user: { slot: OpSlot; name: string; where: string }[] = [];
  for (const spec of flags.kernel ?? []) {
    const at = spec.indexOf("=");
    if (at < 0) throw new UsageError(`--kernel: "${spec}" is not SLOT=FILE.wgsl`);
    const slot = spec.slice(0, at) as OpSlot, where = spec.slice(at + 1);
    const name = basename(where, extname(where));
    let code: string;
    try {
      code = await readFile(where, "utf8");
    } catch (e) {
      throw new Error(`--kernel ${spec}: ${(e as Error).message}`);
    }
    addUserKernel(slot, name, code, where);
    user.push({ slot, name, where });
  }

  const { adapter, device } = await nodeGpu();
  const timer = new GpuTimer(device);
  let bar: Progress | undefined;
  const onProgress = (done: number, total: number, what: string) => (bar ??= new Progress("measuring")).update(done, total, "", what);
  const tuneOpts = { cache: fsTuneCache(), refresh: true, precision: flags.precision, onProgress, budgetSeconds: Infinity };
  const { model } = await openModel(device, shape, Math.max(flags.context, 16), undefined, flags.batch, { tune: tuneOpts });
  bar?.done();
  const report = model.tuneReport!;
  const results = report.results ?? [];
  const cfg = model.config;
  model.destroy();

  console.error("roofline: streaming read, multiply-add peak (in this run, for the fractions)");
  const roofline = await measureRoofline(new Kernels(device), timer, { runs: 3, minSeconds: 0.1, streamBytes: defaultStreamBytes() });
  const rows = results.map((r) => ({
    ...r,
    roofline_fraction: r.gbps === null || r.gflops === null ? null : Math.max(r.gbps / roofline.read_gbps, r.gflops / roofline.peak_gflops),
  }));

  // A user's kernel is checked against the float64 references at the model's shapes, and must reproduce the golden
  // values, forced into its slot.
  const float64: { variant: string; what: string; ok: boolean; max_ratio: number | null; error?: string }[] = [];
  for (const u of user) {
    const v = allVariants().find((x) => x.slot === u.slot && x.name === u.name)!;
    for (const c of await checkVariantFloat64(new Kernels(device), v, cfg)) {
      float64.push({ variant: `${u.slot}=${u.name}`, what: c.what, ok: c.ok, max_ratio: c.maxRatio, ...(c.error ? { error: c.error } : {}) });
    }
  }
  const golden: { variant: string; model: string; ok: boolean; note: string }[] = [];
  for (const u of user) {
    for (const dirPath of new Set([EMBEDDED, positionals.MODEL_DIR].filter((p) => p !== undefined).map((p) => resolve(p)))) {
      const dir = nodeModelDir(dirPath);
      if (!(await dir.exists("golden.json"))) continue;
      const g = await readJson(dir, "golden.json");
      const longest = Math.max(...g.sequences.map((s: { length: number; greedy: { new_tokens: number[] } }) => s.length + s.greedy.new_tokens.length));
      const forced = await Qwen2Model.load(device, dir, { maxSeqLen: longest, kernels: { [u.slot]: u.name } });
      try {
        const check = await runGoldenCheck(forced, dir);
        golden.push({ variant: `${u.slot}=${u.name}`, model: basename(dirPath), ok: check.ok, note: firstDivergence(check) ?? "every tensor within tolerance" });
      } finally {
        forced.destroy();
      }
    }
  }

  const info = describeAdapter(adapter, device);
  console.log(`r3gpu tune ${shape} on ${info.description || info.vendor}: roofline read ${roofline.read_gbps.toFixed(2)} GB/s, ` +
    `peak ${roofline.peak_gflops.toFixed(1)} GFLOP/s`);
  console.log(table(rows));
  for (const c of float64) {
    console.log(`float64 reference, ${c.variant}, ${c.what}: ${c.ok ? `PASS (${c.max_ratio!.toFixed(2)} of the error bound)` : `FAIL (${c.error})`}`);
  }
  for (const g of golden) console.log(`golden ${g.model} with ${g.variant}: ${g.ok ? "PASS" : "FAIL"} (${g.note})`);
  console.log(`chosen: ${Object.entries(report.choice).map(([s, v]) => `${s}=${v}`).join(", ")} (kept in ${tuneOpts.cache.where})`);
  if (flags.json !== undefined) {
    await writeFile(flags.json, JSON.stringify({
      shape, adapter: info, roofline, choice: report.choice, precision: flags.precision, float64, golden,
      variants: rows.map((r) => ({
        op: r.op, variant: r.variant, precision: r.precision, supported: r.supported, correct: r.correct, chosen: r.chosen,
        seconds: r.seconds, gbps: r.gbps, gflops: r.gflops, roofline_fraction: r.roofline_fraction, error: r.error,
        tolerance: r.tolerance, step: r.step, about: r.about, note: r.note ?? null,
      })),
    }, null, 2) + "\n");
    console.log(`wrote ${flags.json}`);
  }
  return golden.every((g) => g.ok) && float64.every((c) => c.ok) && user.every((u) => rows.some((r) => r.op === u.slot && r.variant === u.name && r.correct)) ? 0 : 1;
}

function table(rows: (VariantResult & { roofline_fraction: number | null })[]): string {
  const cell = (x: number | null, digits: number) => (x === null ? "-" : x.toPrecision(digits));
  const lines = [["op", "variant", "prec", "ok", "chosen", "ms", "GB/s", "GFLOP/s", "roofline", "note"]];
  for (const r of rows) {
    lines.push([r.op, r.variant, r.precision, r.correct === null ? "-" : r.correct ? "yes" : "NO", r.chosen ? "*" : "",
      r.seconds === null ? "-" : (r.seconds * 1000).toPrecision(3), cell(r.gbps, 3), cell(r.gflops, 3), cell(r.roofline_fraction, 2), r.note ?? ""]);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l) => l.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}
