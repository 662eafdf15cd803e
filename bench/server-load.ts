// Load on `r3gpu serve`: closed-loop clients each send one /v1/embeddings request (one document) after another
// for a fixed time; for each client count, requests per second and p50/p99 latency. The server runs in its own
// process, as in use (started here from MODEL_DIR, or already running at --url).
//
//   npm run build && node dist/bench/server-load.js [MODEL_DIR | --url URL] [--clients 1,4,16] [--seconds 10]
import { spawn, type ChildProcess } from "node:child_process";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string" },
    clients: { type: "string", default: "1,4,16" },
    seconds: { type: "string", default: "10" },
  },
});
const levels = values.clients!.split(",").map(Number);
const seconds = Number(values.seconds);
if (levels.some((c) => !Number.isInteger(c) || c < 1) || !(seconds > 0)) {
  throw new Error("--clients takes positive integers (1,4,16) and --seconds a positive number");
}
// Documents of a few dozen tokens, like the golden ones; varied so that no layer of the stack can cache a reply.
const TEXTS = [
  "pandas is a fast, powerful, flexible and easy to use open source data analysis and manipulation tool.",
  "Use list.reverse() to reverse a list in place, or reversed(lst) to get a reversed iterator.",
  "Zürich has many hiking trails; the Uetliberg offers views over the city and the lake.",
  "The mitochondrion is the organelle that produces most of the chemical energy a cell needs.",
];

async function startServer(modelDir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(root, "bin", "r3gpu.js"), "serve", modelDir, "--port", "0"],
    { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((ok, fail) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) ok(m[1]);
    });
    child.on("exit", (code) => fail(new Error(`r3gpu serve exited with code ${code}`)));
  });
  return { url, child };
}

async function embed(url: string, input: string): Promise<void> {
  const res = await fetch(`${url}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ input }),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
}

interface Figures {
  clients: number;
  requests: number;
  errors: number;
  perSecond: number;
  p50: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

/** Each client sends its next request when the last is answered, until the time is up. */
async function level(url: string, clients: number): Promise<Figures> {
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let n = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await embed(url, TEXTS[n++ % TEXTS.length]);
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    clients, requests: latencies.length, errors, perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99),
  };
}

const server = values.url ? { url: values.url, child: undefined } : await startServer(resolve(positionals[0] ?? join(root, "models", "tiny-qwen2")));
try {
  for (let i = 0; i < 3; i++) await embed(server.url, TEXTS[i]);
  console.log(`r3gpu serve at ${server.url}; ${seconds} s per level; ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"})\n`);
  console.log("| clients | requests | errors | requests/s | p50 ms | p99 ms |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const clients of levels) {
    const f = await level(server.url, clients);
    console.log(`| ${f.clients} | ${f.requests} | ${f.errors} | ${f.perSecond.toFixed(1)} | ${f.p50.toFixed(1)} | ${f.p99.toFixed(1)} |`);
  }
} finally {
  if (server.child) {
    const exited = new Promise((done) => server.child!.once("exit", done));
    server.child.kill("SIGTERM");
    await exited;
  }
}
