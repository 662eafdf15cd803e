// The WebGPU adapter r3gpu gets on this machine, as JSON, and whether it is a CPU driver. Part of
// scripts/device-check.sh (the "adapter" step); usable alone: node scripts/device-adapter.mjs [APP_DIR] [OUT.json]
//
// APP_DIR is a built r3gpu (default: this repository; device-check.sh passes the unpacked bundle's app/).
// The adapter comes from the engine's own nodeGpu(), so it is the one `r3gpu check` and `r3gpu bench` use.
// Exit status: 0 a GPU adapter; 3 a CPU adapter (lavapipe, SwiftShader, ...); 1 no adapter or an error.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const appDir = resolve(process.argv[2] ?? join(here, ".."));
const outFile = process.argv[3];

/** Every enumerable field, own or on the prototype (Dawn exposes GPUAdapterInfo and limits as accessors). */
function plain(obj) {
  const o = {};
  for (const key in obj) {
    const v = obj[key];
    if (typeof v !== "function") o[key] = v;
  }
  return o;
}

// A CPU implementation of Vulkan or WebGPU names itself in one of these fields. Dawn also sets
// isFallbackAdapter for a CPU-type Vulkan device (lavapipe reports vendor "mesa", architecture "software").
const CPU_DRIVERS = [
  [/llvmpipe|lavapipe/i, "lavapipe"],
  [/swiftshader/i, "SwiftShader"],
  [/softpipe/i, "softpipe"],
  [/warp|microsoft basic render/i, "WARP"],
];

export function classify(info) {
  const fields = ["vendor", "architecture", "device", "description"].map((k) => String(info[k] ?? ""));
  const reasons = [];
  let driver = "";
  if (info.isFallbackAdapter === true) reasons.push("adapter.info.isFallbackAdapter is true");
  for (const [re, name] of CPU_DRIVERS) {
    const hit = fields.find((f) => re.test(f));
    if (hit !== undefined) {
      driver ||= name;
      reasons.push(`"${hit}" names ${name}, a CPU driver`);
    }
  }
  if (/^software$|\bcpu\b/i.test(String(info.architecture ?? "")) || /\bcpu\b/i.test(String(info.description ?? ""))) {
    reasons.push(`architecture/description "${info.architecture} / ${info.description}" says CPU`);
  }
  const cpu = reasons.length > 0;
  return { type: cpu ? "cpu" : "gpu", cpu_driver: cpu ? driver || "software" : null, reasons };
}

async function main() {
  const report = {
    app: appDir,
    node: process.version,
    webgpu: null,
    env: Object.fromEntries(["VK_DRIVER_FILES", "VK_ICD_FILENAMES", "LD_LIBRARY_PATH", "VK_LOADER_DEBUG"]
      .filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]])),
  };
  try {
    report.webgpu = createRequire(join(appDir, "package.json"))("webgpu/package.json").version;
  } catch { /* reported as null */ }
  let gpu;
  try {
    const { nodeGpu } = await import(pathToFileURL(join(appDir, "dist", "src", "index.js")).href);
    gpu = await nodeGpu();
  } catch (e) {
    const icd = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
    report.error = `no WebGPU adapter ${icd ? `through the Vulkan ICD ${icd}` : "(the Vulkan loader's default ICDs)"}: ${e.message}`;
    finish(report, 1);
    return;
  }
  const { adapter, device, info } = gpu;
  report.info = plain(adapter.info ?? {});
  report.classification = classify(report.info);
  report.adapter_features = [...adapter.features].sort();
  report.device_features = info.features;
  report.limits = plain(adapter.limits);
  report.engine = info;
  // Dawn offers "core-features-and-limits" only on a full (not compatibility-mode) backend: Vulkan on Linux.
  report.backend = report.adapter_features.includes("core-features-and-limits") ? (process.platform === "linux" ? "Vulkan" : "core") : "compatibility";
  device.destroy();
  finish(report, report.classification.type === "cpu" ? 3 : 0);
}

function finish(report, code) {
  const text = JSON.stringify(report, null, 2);
  console.log(text);
  if (outFile) writeFileSync(outFile, text + "\n");
  if (report.error) console.error(report.error);
  // Dawn's instance can keep the event loop alive after the device is destroyed: leave explicitly.
  process.exit(code);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
