// scripts/device-check.sh, so that it cannot rot before a GPU machine comes: `pack` makes a bundle that fits,
// with the working tree, in the 64 MiB that travel to that machine, and `run`, here against lavapipe, unpacks it,
// finds the adapter, checks the golden sets and benchmarks with the bundle's own Node, and writes the files
// (few, small, plainly named) that a GPU run would bring back. Also: a CPU adapter is refused where a GPU is
// expected, and a missing bundle says how to make one. No time is asserted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { goldenDir, repoRoot } from "./shared-paths.ts";

const script = join(repoRoot, "scripts", "device-check.sh");
const MiB = 1024 * 1024;
const TRANSFER_LIMIT = 64 * MiB;
const CPU_LABEL = "[CPU adapter (lavapipe): figures are not GPU figures]";
// The 0.5B shape alone keeps the run to a few minutes on 2 cores; the 1.5B one takes about ten more here.
const SHAPES = process.env.R3GPU_DEVICE_CHECK_TEST_SHAPES ?? "qwen2.5-0.5b";
const linuxX64 = process.platform === "linux" && process.arch === "x64";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sh(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawn("bash", [script, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s) => (stderr += s));
  return new Promise((done, fail) => {
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}

/** What the device tool copies besides the carried paths: tracked and untracked-not-ignored files. */
function treeBytes(): number {
  const list = spawnSync("git", ["ls-files", "-z", "-co", "--exclude-standard"], { cwd: repoRoot, encoding: "utf8" });
  assert.equal(list.status, 0, list.stderr);
  return list.stdout.split("\0").filter(Boolean)
    .reduce((sum, f) => sum + (lstatSync(join(repoRoot, f), { throwIfNoEntry: false })?.size ?? 0), 0);
}

/** The summary's lines by step: "name  STATUS  Ns  note". */
function summary(stdout: string): Map<string, { status: string; line: string }> {
  const at = stdout.lastIndexOf("== summary");
  assert.ok(at >= 0, `no summary in the output:\n${stdout.slice(-3000)}`);
  const steps = new Map<string, { status: string; line: string }>();
  for (const line of stdout.slice(at).split("\n").slice(1)) {
    const m = /^(\S+)\s+(OK|PASS|FAIL|TIMEOUT|SKIP|INFO)\s+\d+s\s/.exec(line);
    if (m) steps.set(m[1], { status: m[2], line });
  }
  return steps;
}

function step(steps: ReturnType<typeof summary>, name: string, status: string, includes?: string | RegExp): string {
  const s = steps.get(name);
  assert.ok(s, `no summary line for ${name}: ${[...steps.keys()].join(", ")}`);
  assert.equal(s.status, status, s.line);
  if (typeof includes === "string") assert.ok(s.line.includes(includes), `${name}: "${includes}" not in: ${s.line}`);
  else if (includes) assert.match(s.line, includes);
  return s.line;
}

function tarList(file: string, member?: string): string[] {
  const r = member
    ? spawnSync("bash", ["-c", `tar -xOf "$0" "$1" | xz -dc | tar -t`, file, member], { encoding: "utf8", maxBuffer: 64 * MiB })
    : spawnSync("tar", ["-tf", file], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

const work = mkdtempSync(join(tmpdir(), "r3gpu-device-test-"));
const bundle = join(work, "bundle.tar");
let manifest: string[][] = [];
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

test("pack: one archive that fits beside the working tree, with Node, Dawn, the loader and the golden decisions", { skip: !linuxX64 && "Linux x86-64 only" }, async () => {
  const r = await sh(["pack", "--no-build", "--output", bundle]);
  assert.equal(r.code, 0, `pack failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  const text = spawnSync("tar", ["-xOf", bundle, "manifest.tsv"], { encoding: "utf8" }).stdout;
  manifest = text.split("\n").filter(Boolean).map((l) => l.split("\t"));
  const size = statSync(bundle).size;
  const tree = treeBytes();
  assert.ok(size + tree <= TRANSFER_LIMIT, `bundle ${(size / MiB).toFixed(2)} MiB + tree ${(tree / MiB).toFixed(2)} MiB > 64 MiB`);
  assert.match(r.stdout, /wrote .*bundle\.tar: [\d.]+ MiB; with the working tree [\d.]+ MiB of the 64\.00 MiB/);
  assert.match(r.stdout, /bin\/node/, "the contents are printed");

  const members = tarList(bundle);
  assert.deepEqual(members.slice(0, 3), ["manifest.tsv", "contents.txt", "core.tar.xz"]);
  const core = tarList(bundle, "core.tar.xz");
  for (const f of ["bin/node", "lib/libvulkan.so.1", "app/package.json", "app/bin/r3gpu.js", "app/dist/src/cli/main.js",
    "app/dist/src/bench/run.js", "app/node_modules/webgpu/dist/linux-x64/dawn.node", "app/node_modules/webgpu/index.js"]) {
    assert.ok(core.includes(`r3gpu-device/${f}`), `${f} not in the bundle`);
  }
  assert.ok(!core.some((f) => f.includes("lancedb-linux-x64")), "LanceDB's native module stays out");
  assert.ok(!core.some((f) => f.endsWith(".map") || f.endsWith(".d.ts")), "no source maps or declarations");

  const golden = manifest.filter((l) => l[0] === "golden");
  // Every shared set has a decision; a set identical to a folder of the tree is checked there, not shipped twice.
  const shared = existsSync(goldenDir())
    ? readdirSync(goldenDir()).filter((n) => existsSync(join(goldenDir(), n, "golden.json")))
    : [];
  for (const name of shared) assert.ok(golden.some((l) => l[1] === name), `no decision for golden set ${name}`);
  const tiny = golden.find((l) => l[1] === "tiny-public");
  if (tiny) assert.deepEqual(tiny.slice(2, 4), ["tree", "models/tiny-qwen2"]);
  for (const l of golden) {
    assert.ok(["tree", "bundle", "absent"].includes(l[2]), l.join(" "));
    if (l[2] === "absent") assert.match(l[4], /^not in the bundle \(size budget: [\d.]+ MiB compressed, [\d.]+ MiB left/);
    if (l[2] === "bundle") assert.ok(members.includes(`golden-${l[1]}.tar.xz`), `golden-${l[1]}.tar.xz`);
  }
});

test("run --allow-cpu on lavapipe: every step, one summary line each, the JSON files' contents", { skip: !linuxX64 && "Linux x86-64 only" }, async () => {
  assert.ok(existsSync(bundle), "no bundle: the pack test failed");
  const out = join(work, "out");
  // Every variant on the embedded model's golden set, and the workbench on it: at the real shapes these take tens of
  // minutes on lavapipe.
  const tiny = join(repoRoot, "models", "tiny-qwen2");
  const r = await sh(["run", "--allow-cpu", "--bundle", bundle], {
    OUT: out, R3GPU_DEVICE_CHECK_SHAPES: SHAPES, R3GPU_DEVICE_CHECK_VARIANT_SETS: "tiny-qwen2", R3GPU_DEVICE_CHECK_TUNE_TARGETS: tiny,
  });
  assert.equal(r.code, 0, `run failed:\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
  const steps = summary(r.stdout);
  assert.ok(manifest.some((l) => l[0] === "golden"), "the bundle's manifest names no golden set");

  step(steps, "unpack", "OK", "from bundle.tar");
  step(steps, "host", "INFO");
  step(steps, "vulkan", "OK");
  step(steps, "adapter", "OK", "CPU adapter (lavapipe)");
  for (const l of manifest.filter((l) => l[0] === "golden")) {
    if (l[2] === "absent") {
      step(steps, `check:${l[1]}`, "SKIP", `${l[1]}: not in the bundle (size budget`);
      continue;
    }
    step(steps, `check:${l[1]}`, "PASS", "PASS: every tensor within tolerance");
    if (l[1] === "tiny-qwen2") step(steps, `variants:${l[1]}`, "PASS", /^PASS: linear\.decode=.*;PASS: every variant within tolerance/);
    else step(steps, `variants:${l[1]}`, "SKIP", "left out by R3GPU_DEVICE_CHECK_VARIANT_SETS");
  }
  step(steps, "tune:tiny-qwen2", "OK", / chosen linear\.vector=\w+ \([\d.]+ of the roofline\), linear\.decode=\w+ \([\d.]+ of the roofline\), .* variants measured, 0 dropped as incorrect/);
  for (const shape of ["qwen2.5-0.5b", "qwen2.5-1.5b"]) {
    if (SHAPES.split(/\s+/).includes(shape)) step(steps, `bench:${shape}`, "OK", /decode [\d.]+ tok\/s, decode_vs_floor [\d.]+ .*prefill [\d.]+ tok\/s.*furthest from the roofline: decode /);
    else step(steps, `bench:${shape}`, "SKIP", "left out by R3GPU_DEVICE_CHECK_SHAPES");
  }
  for (const { line } of steps.values()) assert.ok(line.endsWith(CPU_LABEL), `not labelled as CPU figures: ${line}`);

  // What comes back from a device run: at most 8 files, each under 16 MiB, plainly named, none in folders.
  const files = readdirSync(out, { withFileTypes: true });
  assert.ok(files.length <= 8, files.map((f) => f.name).join(" "));
  for (const f of files) {
    assert.ok(f.isFile() && /^[A-Za-z0-9._-]+$/.test(f.name), f.name);
    assert.ok(statSync(join(out, f.name)).size < 16 * MiB, f.name);
  }
  const names = files.map((f) => f.name);
  for (const f of ["device-check.log", "adapter.json", "summary.json"]) assert.ok(names.includes(f), `${f} missing from OUT`);

  const adapter = JSON.parse(readFileSync(join(out, "adapter.json"), "utf8"));
  assert.equal(adapter.classification.type, "cpu");
  assert.equal(adapter.classification.cpu_driver, "lavapipe");
  assert.equal(adapter.info.isFallbackAdapter, true);
  assert.ok(adapter.limits.maxBufferSize > 0 && adapter.limits.maxStorageBufferBindingSize > 0);
  assert.ok(adapter.adapter_features.length > 0);
  assert.ok(adapter.app.endsWith("/r3gpu-device/app"), `the bundle's app, not the tree's: ${adapter.app}`);

  for (const shape of SHAPES.split(/\s+/).filter(Boolean)) {
    const report = JSON.parse(readFileSync(join(out, `bench-${shape}.json`), "utf8"));
    const m = report.models[shape];
    assert.equal(report.quick, true);
    assert.match(report.adapter.description, /llvmpipe/);
    for (const key of ["decode_tok_s", "prefill_tok_s", "decode_vs_floor", "prefill_fraction_of_peak"]) {
      assert.ok(Number.isFinite(m[key]) && m[key] > 0, `${shape}.${key} = ${m[key]}`);
    }
  }

  const s = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
  assert.equal(s.cpu_adapter, true);
  assert.deepEqual(s.steps.map((x: { step: string }) => x.step), [...steps.keys()]);
  for (const x of s.steps) assert.equal(x.status, steps.get(x.step)!.status, x.step);
  const log = readFileSync(join(out, "device-check.log"), "utf8");
  assert.ok(log.includes("== summary") && log.includes('"isFallbackAdapter": true'), "the log holds every step's output");
});

test("run refuses a CPU adapter where a GPU is expected, and says what is missing", { skip: !linuxX64 && "Linux x86-64 only" }, async () => {
  assert.ok(existsSync(bundle), "no bundle: the pack test failed");
  const lavapipe = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"].flatMap((d) => existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : [])
    .find((f) => /lvp_icd/.test(f));
  assert.ok(lavapipe, "no lavapipe ICD (scripts/setup-webgpu.sh installs it)");
  const out = join(work, "refuse");
  // The ICD given explicitly, as an NVIDIA one would be found: the loader and Dawn come up, on a CPU driver.
  const r = await sh(["run", "--bundle", bundle], { OUT: out, R3GPU_VK_ICD: lavapipe, R3GPU_DEVICE_CHECK_ALLOW_CPU: "0" });
  assert.equal(r.code, 1, r.stdout.slice(-4000));
  const steps = summary(r.stdout);
  step(steps, "vulkan", "OK", lavapipe);
  step(steps, "adapter", "FAIL", "CPU adapter (lavapipe) where a GPU was expected");
  for (const name of ["check:tiny-public", "bench:qwen2.5-0.5b", "bench:qwen2.5-1.5b"]) {
    if (steps.has(name)) step(steps, name, "SKIP", "no GPU adapter");
  }
  assert.ok(!readdirSync(out).some((f) => f.startsWith("bench-")), "no bench figures from a CPU adapter");
  for (const { line } of steps.values()) assert.ok(!line.includes(CPU_LABEL), line);

  // Without it, on a machine without NVIDIA's Vulkan driver, the missing ICD is named.
  const nvidia = ["/usr/local/nvidia/share/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
    .some((d) => existsSync(d) && readdirSync(d).some((f) => f.startsWith("nvidia")));
  if (!nvidia) {
    const r2 = await sh(["run", "--bundle", bundle], { OUT: join(work, "no-icd"), R3GPU_DEVICE_CHECK_ALLOW_CPU: "0", R3GPU_VK_ICD: "" });
    assert.equal(r2.code, 1);
    step(summary(r2.stdout), "vulkan", "FAIL", "no NVIDIA Vulkan ICD");
  }
});

test("run without a bundle says how to make one, and still reports every step", async () => {
  const r = await sh(["run", "--bundle", join(work, "absent.tar")], { OUT: join(work, "absent") });
  assert.equal(r.code, 1);
  const steps = summary(r.stdout);
  step(steps, "unpack", "FAIL", "bash scripts/device-check.sh pack");
  for (const name of ["vulkan", "check", "bench:qwen2.5-0.5b", "tune:qwen2.5-0.5b"]) {
    assert.ok(steps.has(name), `no line for ${name}: ${[...steps.keys()].join(", ")}`);
  }
});
