// The fuzz driver: `npm run fuzz -- --cases N --seed S [--targets a,b] [--json FILE] [--jobs J]`.
// Each file case is written to a temporary folder and run in a child process under a heap limit
// (--max-old-space-size), an address-space limit (prlimit --as, or ulimit -v) and a timeout; the HTTP target runs one
// bounded server and sends it one request per case. Outcomes are counted per target and printed as a table; the run
// fails (exit 1) on any accepted-invalid input, unnamed error, crash, hang or excessive memory.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { caseSeed, Rng } from "./rng.ts";
import { repoRoot } from "./seeds.ts";
import { classifyResponse, send, type HttpTarget } from "./targets/http.ts";
import { DEFAULT_TARGETS, FILE_TARGETS, HTTP_TARGETS } from "./targets/index.ts";
import { BAD, namesInput, OUTCOMES, type CaseResult, type FileCase, type FileTarget, type Outcome } from "./targets/types.ts";

export interface FuzzOptions {
  seed: number;
  /** Cases per target. */
  cases: Record<string, number>;
  /** Child processes at a time (file targets). */
  jobs?: number;
  timeoutMs?: number;
  /** For cases that load the model onto the GPU, and for each HTTP request. */
  gpuTimeoutMs?: number;
  heapMb?: number;
  addressSpaceMb?: number;
  /** Every n-th model case also loads onto the GPU (0: none). */
  gpuEvery?: number;
  /** Called as each case finishes. */
  onCase?: (r: CaseResult) => void;
}

export interface FuzzReport {
  seed: number;
  limits: { timeoutMs: number; gpuTimeoutMs: number; heapMb: number; addressSpaceMb: number };
  counts: Record<string, Record<Outcome, number>>;
  /** Every case whose outcome is bad, and the first case of each target (the unmutated seed). */
  notable: CaseResult[];
  seconds: number;
}

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "child.js");
const CLI = join(repoRoot, "bin", "r3gpu.js");
const MEMORY = /heap out of memory|allocation failed|out of memory|bad_alloc|Cannot allocate memory|ENOMEM/i;
// Besides a case's file names, what messages name their input by: encode's argument, a template, a config field.
const INPUT_NAMES = ["encode:", "chat_template", "config.json", "vocab_size", "num_hidden_layers"];

const hasPrlimit = () => spawnSync("prlimit", ["--version"]).status === 0;

/** `node ARGS` under the heap and address-space limits. */
function boundedNode(args: string[], heapMb: number, addressSpaceMb: number, prlimit: boolean): ChildProcess {
  const node = [process.execPath, `--max-old-space-size=${heapMb}`, ...args];
  const opts = { stdio: ["ignore", "pipe", "pipe"] as ("ignore" | "pipe")[], env: { ...process.env, NODE_NO_WARNINGS: "1" } };
  if (prlimit) return spawn("prlimit", [`--as=${addressSpaceMb * 1024 * 1024}`, "--", ...node], opts);
  const quoted = node.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  return spawn("sh", ["-c", `ulimit -v ${addressSpaceMb * 1024} && exec ${quoted}`], opts);
}

function writeCase(root: string, c: FileCase, target: string): string {
  const files = join(root, "files");
  mkdirSync(files, { recursive: true });
  writeFileSync(join(root, "case.json"), JSON.stringify({ ...c, files: undefined, target }));
  for (const [name, spec] of Object.entries(c.files)) {
    const path = resolve(files, name);
    mkdirSync(dirname(path), { recursive: true });
    if (typeof spec === "string" || spec instanceof Uint8Array) writeFileSync(path, spec);
    else if ("link" in spec) symlinkSync(spec.link, path);
    else if ("directory" in spec) mkdirSync(path);
    else if (spawnSync("mkfifo", [path]).status !== 0) throw new Error(`fuzz: mkfifo ${path} failed`);
  }
  return files;
}

interface Limits {
  timeoutMs: number;
  gpuTimeoutMs: number;
  heapMb: number;
  addressSpaceMb: number;
  prlimit: boolean;
}

async function runFileCase(target: FileTarget, c: FileCase, root: string, limits: Limits): Promise<{ outcome: Outcome; detail?: string }> {
  const files = writeCase(root, c, target.name);
  const child = boundedNode([CHILD, root], limits.heapMb, limits.addressSpaceMb, limits.prlimit);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-20_000)));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, c.gpu ? limits.gpuTimeoutMs : limits.timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => child.on("close", (co, si) => done([co, si])));
  clearTimeout(timer);
  if (timedOut) return { outcome: "hang", detail: `killed after ${c.gpu ? limits.gpuTimeoutMs : limits.timeoutMs} ms` };
  const line = stdout.trim().split("\n").at(-1) ?? "";
  let result: { accepted?: true; error?: string; memory?: string } | undefined;
  try {
    result = JSON.parse(line);
  } catch {
    result = undefined;
  }
  if (code !== 0 || !result) {
    const tail = stderr.trim().split("\n").slice(-3).join(" | ");
    return { outcome: MEMORY.test(stderr) ? "excessive-memory" : "crash", detail: `exit ${code ?? signal}: ${tail}` };
  }
  if (result.memory) return { outcome: "excessive-memory", detail: result.memory };
  if (result.accepted) return { outcome: c.invalid ? "accepted-invalid" : "accepted" };
  const message = result.error!;
  const named = namesInput(message, files, Object.keys(c.files), INPUT_NAMES);
  return { outcome: named ? "clean-error" : "unnamed-error", detail: message.slice(0, 500) };
}

async function pool<T>(items: T[], jobs: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

/** A bounded `r3gpu serve` on the target's model, and its port once it listens. */
async function startServer(target: HttpTarget, limits: Limits): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const child = boundedNode([CLI, "serve", join(repoRoot, target.model), "--port", "0", "--max-length", "128", "--context", "128",
    "--model-id", target.modelId], limits.heapMb * 2, limits.addressSpaceMb * 2, limits.prlimit);
  let log = "";
  child.stderr!.on("data", (d) => (log = (log + d).slice(-20_000)));
  const port = await new Promise<number>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`fuzz: r3gpu serve did not start within 120 s: ${log}`)), 120_000);
    createInterface({ input: child.stdout! }).on("line", (l) => {
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(l);
      if (m) {
        clearTimeout(timer);
        done(Number(m[1]));
      }
    });
    child.on("exit", (code) => fail(new Error(`fuzz: r3gpu serve exited (${code}) before listening: ${log}`)));
  });
  return { child, port, log: () => log };
}

async function runHttp(target: HttpTarget, count: number, seed: number, limits: Limits, record: (r: CaseResult) => void): Promise<void> {
  let server = await startServer(target, limits);
  let alive = true;
  const watch = () => server.child.once("exit", () => (alive = false));
  watch();
  for (let index = 0; index < count; index++) {
    const c = target.generate(new Rng(caseSeed(seed, target.name, index)), index);
    const started = Date.now();
    const res = await send(server.port, c.request, limits.gpuTimeoutMs);
    // A dropped connection may be the server dying: give its exit a moment to be seen.
    if (res.dropped) await new Promise((r) => setTimeout(r, 200));
    let { outcome, detail } = classifyResponse(res, c.invalid);
    // A request that kills the server is a crash whatever the client saw.
    if (!alive) {
      outcome = "crash";
      detail = `the server died: ${server.log().trim().split("\n").slice(-3).join(" | ")}`;
      server = await startServer(target, limits);
      alive = true;
      watch();
    }
    record({ target: target.name, index, mutation: c.mutation, outcome, detail, ms: Date.now() - started });
  }
  server.child.kill("SIGTERM");
  await new Promise((r) => server.child.once("close", r));
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const limits: Limits = {
    timeoutMs: opts.timeoutMs ?? 20_000,
    gpuTimeoutMs: opts.gpuTimeoutMs ?? 60_000,
    heapMb: opts.heapMb ?? 256,
    addressSpaceMb: opts.addressSpaceMb ?? 4096,
    prlimit: hasPrlimit(),
  };
  const started = Date.now();
  const counts: FuzzReport["counts"] = {};
  const notable: CaseResult[] = [];
  const record = (r: CaseResult) => {
    counts[r.target][r.outcome]++;
    if (BAD.includes(r.outcome) || r.index === 0) notable.push(r);
    opts.onCase?.(r);
  };
  const work = mkdtempSync(join(tmpdir(), "r3gpu-fuzz-"));
  try {
    const fileCases: { target: FileTarget; index: number }[] = [];
    const http: [HttpTarget, number][] = [];
    for (const [name, n] of Object.entries(opts.cases)) {
      counts[name] = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
      if (HTTP_TARGETS[name]) {
        http.push([await HTTP_TARGETS[name](), n]);
      } else if (FILE_TARGETS[name]) {
        const target = await FILE_TARGETS[name]();
        for (let index = 0; index < n; index++) fileCases.push({ target, index });
      } else {
        throw new Error(`fuzz: no target "${name}" (targets: ${[...Object.keys(FILE_TARGETS), ...Object.keys(HTTP_TARGETS)].join(", ")})`);
      }
    }
    const gpuEvery = opts.gpuEvery ?? 0;
    await pool(fileCases, opts.jobs ?? availableParallelism(), async ({ target, index }) => {
      const c = target.generate(new Rng(caseSeed(opts.seed, target.name, index)), index, { gpuEvery });
      const root = join(work, `${target.name}-${index}`);
      const t0 = Date.now();
      const { outcome, detail } = await runFileCase(target, c, root, limits);
      rmSync(root, { recursive: true, force: true });
      record({ target: target.name, index, mutation: c.mutation, outcome, detail, ms: Date.now() - t0 });
    });
    for (const [target, n] of http) await runHttp(target, n, opts.seed, limits, record);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { prlimit: _, ...shown } = limits;
  notable.sort((a, b) => a.target.localeCompare(b.target) || a.index - b.index);
  return { seed: opts.seed, limits: shown, counts, notable, seconds: (Date.now() - started) / 1000 };
}

export function formatTable(report: FuzzReport): string {
  const rows = Object.entries(report.counts);
  const head = ["target", "cases", ...OUTCOMES];
  const body = rows.map(([name, c]) => [name, String(OUTCOMES.reduce((n, o) => n + c[o], 0)), ...OUTCOMES.map((o) => String(c[o]))]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(head), ...body.map(line)].join("\n");
}

export function badCases(report: FuzzReport): CaseResult[] {
  return report.notable.filter((r) => BAD.includes(r.outcome));
}

async function main(argv: string[]): Promise<number> {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    args: argv,
    options: {
      cases: { type: "string", default: "200" },
      seed: { type: "string", default: "1" },
      targets: { type: "string", default: DEFAULT_TARGETS.join(",") },
      json: { type: "string" },
      jobs: { type: "string" },
      "gpu-every": { type: "string", default: "50" },
    },
  });
  const int = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`fuzz: --${name} must be a non-negative integer, got "${v}"`);
    return Number(v);
  };
  const n = int("cases", values.cases)!;
  const seed = int("seed", values.seed)!;
  const targets = values.targets!.split(",").filter(Boolean);
  // The HTTP target generates text on the GPU for many requests; it gets a tenth of the cases.
  const cases = Object.fromEntries(targets.map((t) => [t, t === "http" ? Math.max(1, Math.ceil(n / 10)) : n]));
  let done = 0;
  const total = Object.values(cases).reduce((a, b) => a + b, 0);
  const report = await runFuzz({
    seed, cases, jobs: int("jobs", values.jobs), gpuEvery: int("gpu-every", values["gpu-every"]),
    onCase: (r) => {
      done++;
      if (BAD.includes(r.outcome)) console.error(`\n${r.target} #${r.index} ${r.outcome}: ${r.mutation}\n  ${r.detail ?? ""}`);
      if (process.stderr.isTTY) process.stderr.write(`\r${done}/${total} cases`);
    },
  });
  console.log(`\nseed ${seed}, ${total} cases in ${report.seconds.toFixed(0)} s; limits per case: ${report.limits.timeoutMs} ms ` +
    `(${report.limits.gpuTimeoutMs} ms on the GPU), heap ${report.limits.heapMb} MB, address space ${report.limits.addressSpaceMb} MB`);
  console.log(formatTable(report));
  if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2) + "\n");
  return badCases(report).length === 0 ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    console.error((e as Error).message);
    process.exit(2);
  });
}
