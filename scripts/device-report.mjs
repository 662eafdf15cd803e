// One-line headlines for the summary of scripts/device-check.sh, from the JSON files its steps wrote:
//   node scripts/device-report.mjs adapter ADAPTER.json
//   node scripts/device-report.mjs bench BENCH.json [--expect-gpu]
//   node scripts/device-report.mjs tune TUNE.json
// `bench --expect-gpu` exits 4 when the report's own adapter is a CPU driver (so CPU figures are never
// summarized as GPU ones, even if the adapter changed between steps). R3GPU_CARD (the card's name from
// nvidia-smi) adds the card's datasheet figures where the card is known.
import { readFileSync } from "node:fs";
import { classify } from "./device-adapter.mjs";

// Datasheet figures of the cards this check is meant for: memory bandwidth and dense FP32 without tensor
// cores (WGSL reaches no tensor cores), both as NVIDIA publishes them. More specific names come first.
const CARDS = [
  { match: /H200 NVL/i, name: "H200 NVL", gbps: 4800, gflops: 60000 },
  { match: /H200/i, name: "H200 SXM", gbps: 4800, gflops: 67000 },
  { match: /H100 NVL/i, name: "H100 NVL", gbps: 3900, gflops: 60000 },
  { match: /H100 PCIe/i, name: "H100 PCIe", gbps: 2000, gflops: 51000 },
  { match: /H100/i, name: "H100 SXM", gbps: 3350, gflops: 67000 },
];

const g = (x) => {
  if (!Number.isFinite(x) || x === 0) return String(x);
  return x.toFixed(Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x)))));
};

function card() {
  const name = process.env.R3GPU_CARD ?? "";
  return CARDS.find((c) => c.match.test(name));
}

/** The kernel that loses the most time against the roofline: calls x seconds x (1 - roofline_fraction). */
function furthest(step) {
  if (!step?.rows?.length) return "no kernel rows";
  const lost = (r) => r.calls * r.seconds * (1 - Math.min(1, r.roofline_fraction));
  const r = step.rows.reduce((a, b) => (lost(b) > lost(a) ? b : a));
  return `${r.name} (${r.roofline_fraction.toFixed(2)} of roofline, ${((100 * r.calls * r.seconds) / step.kernel_seconds).toFixed(0)}% of the step)`;
}

function bench(file, expectGpu) {
  const report = JSON.parse(readFileSync(file, "utf8"));
  const kind = classify(report.adapter);
  if (expectGpu && kind.type === "cpu") {
    console.log(`the report's adapter is a CPU driver (${kind.reasons.join("; ")}): not GPU figures`);
    return 4;
  }
  const rf = report.roofline;
  const c = card();
  const parts = Object.entries(report.models).map(([shape, m]) => {
    const d = m.decode.at(-1);
    const p = m.prefill.at(-1);
    const decodeGbps = (d.bytes_per_token * d.tok_s) / 1e9;
    const ofCard = (x, peak, unit) => (c ? `, ${(x / peak).toFixed(3)} of the ${c.name}'s ${peak} ${unit} (datasheet)` : "");
    return `${shape}: decode ${g(m.decode_tok_s)} tok/s, decode_vs_floor ${m.decode_vs_floor.toFixed(2)} ` +
      `(${g(decodeGbps)} GB/s = ${(decodeGbps / rf.read_gbps).toFixed(2)} of the measured read ${g(rf.read_gbps)} GB/s${ofCard(decodeGbps, c?.gbps, "GB/s")}); ` +
      `prefill ${g(m.prefill_tok_s)} tok/s, prefill_fraction_of_peak ${m.prefill_fraction_of_peak.toFixed(3)} ` +
      `(${g(p.gflops)} GFLOP/s of the measured ${g(rf.peak_gflops)}${ofCard(p.gflops, c?.gflops, "GFLOP/s FP32")}); ` +
      `furthest from the roofline: decode ${furthest(m.kernels?.decode)}, prefill ${furthest(m.kernels?.prefill)}`;
  });
  console.log(parts.join(" | "));
  return 0;
}

function adapter(file) {
  const a = JSON.parse(readFileSync(file, "utf8"));
  if (!a.info) {
    console.log(a.error ?? "no adapter");
    return 0;
  }
  const i = a.info;
  const what = a.classification.type === "cpu" ? `CPU adapter (${a.classification.cpu_driver})` : "GPU adapter";
  console.log(`${what}: ${[i.vendor, i.architecture, i.device].filter(Boolean).join(" / ")}: ${i.description} [${a.backend}, Dawn node webgpu ${a.webgpu}]; ` +
    `maxBufferSize ${a.limits.maxBufferSize}, maxStorageBufferBindingSize ${a.limits.maxStorageBufferBindingSize}, ` +
    `features: ${a.device_features.join(" ")}`);
  return 0;
}

/** What the tuner chose per slot and how far from the roofline, and how many variants were measured, correct, dropped. */
function tune(file) {
  const t = JSON.parse(readFileSync(file, "utf8"));
  const chosen = t.variants.filter((v) => v.chosen)
    .map((v) => `${v.op}=${v.variant} (${v.roofline_fraction === null ? "-" : v.roofline_fraction.toFixed(2)} of the roofline)`);
  const measured = t.variants.filter((v) => v.seconds !== null).length;
  const dropped = t.variants.filter((v) => v.correct === false).length;
  console.log(`chosen ${chosen.join(", ")}; ${measured} of ${t.variants.length} variants measured, ${dropped} dropped as incorrect`);
  return dropped === 0 ? 0 : 1;
}

const [what, file, flag] = process.argv.slice(2);
const commands = { adapter, bench: (f) => bench(f, flag === "--expect-gpu"), tune };
if (!commands[what] || !file) {
  console.error("usage: node scripts/device-report.mjs adapter|bench|tune FILE.json [--expect-gpu]");
  process.exit(2);
}
try {
  process.exitCode = commands[what](file);
} catch (e) {
  console.log(`unreadable ${file}: ${e.message}`);
  process.exitCode = 1;
}
