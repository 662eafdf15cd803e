// `r3gpu serve`: loads a model and answers OpenAI-style HTTP requests until SIGTERM or SIGINT, then stops taking
// connections, finishes the requests in flight and exits 0. A second signal exits at once.
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { startServer } from "../server/server.ts";
import { Engine } from "../text/engine.ts";
import { UsageError } from "./args.ts";
import { withLoadProgress } from "./progress.ts";

const OPTIONS = {
  db: { type: "string" },
  host: { type: "string", default: "127.0.0.1" },
  port: { type: "string", default: "8080" },
  "api-key": { type: "string" },
  "model-id": { type: "string" },
  "max-length": { type: "string", default: "1024" },
  context: { type: "string" },
  truncate: { type: "boolean", default: false },
  "max-queue": { type: "string", default: "64" },
  "max-inputs": { type: "string", default: "256" },
  "max-body": { type: "string", default: String(4 << 20) },
  "max-new-tokens": { type: "string" },
  quiet: { type: "boolean", default: false },
} as const;

function integer(values: Record<string, unknown>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = values[name] as string;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  return n;
}

export async function serve(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`serve takes one MODEL_DIR, got ${positionals.length} positional arguments`);
  const port = integer(values, "port", 0, 65535);
  const maxLength = integer(values, "max-length", 2);
  const context = values.context === undefined ? undefined : integer(values, "context", maxLength);
  const maxQueue = integer(values, "max-queue", 0);
  const maxInputs = integer(values, "max-inputs", 1);
  const maxBodyBytes = integer(values, "max-body", 1);
  const maxNewTokens = values["max-new-tokens"] === undefined ? undefined : integer(values, "max-new-tokens", 1);
  const apiKey = values["api-key"] ?? (process.env.R3GPU_API_KEY || undefined);
  if (apiKey === "") throw new UsageError("--api-key is empty; leave it out to serve without a key");

  const db = values.db;
  // Imported only for --db, so that serving without a database does not load LanceDB's native module.
  const database = db === undefined ? undefined : await (await import("../server/search.ts")).openDatabase(db);

  const dirPath = resolve(positionals[0]);
  const modelDir = nodeModelDir(dirPath);
  const { device, info } = await nodeGpu();
  const engine = await withLoadProgress((onProgress) => Engine.load(device, modelDir, {
    // The KV cache serves chat as well as embeddings and search: 4096 tokens unless asked otherwise, and never
    // fewer than an embedding may take.
    maxSeqLen: Math.max(context ?? 4096, maxLength, database?.maxLength ?? 0),
    onProgress,
  }));
  const search = await database?.backend(engine, modelDir);
  const modelId = values["model-id"] ?? basename(dirPath);
  const server = await startServer({
    engine, modelDir: dirPath, modelId, host: values.host, port, apiKey, search, maxLength, truncate: values.truncate, maxQueue,
    maxInputs, maxBodyBytes, maxNewTokens, quiet: values.quiet,
  });
  console.error(`r3gpu serve: model ${modelId} on ${info.description || info.vendor || "WebGPU adapter"}` +
    (db ? `, searching ${db}` : "") + (apiKey ? ", API key required" : ""));
  console.log(`r3gpu serve: listening on ${server.url}`);

  const signal = await new Promise<NodeJS.Signals>((done) => {
    process.once("SIGTERM", () => done("SIGTERM"));
    process.once("SIGINT", () => done("SIGINT"));
  });
  const { running, waiting } = server.queue.stats;
  console.error(`r3gpu serve: ${signal}: accepting no more requests; finishing ${running + waiting} in flight ` +
    "(send the signal again to stop at once)");
  process.once(signal, () => process.exit(1));
  await server.close();
  engine.model.device.destroy();
  console.error("r3gpu serve: stopped");
  return 0;
}
