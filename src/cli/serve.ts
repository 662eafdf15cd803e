// `r3gpu serve`: loads a model and answers OpenAI-style HTTP requests until SIGTERM or SIGINT, then stops taking
// connections, finishes the requests in flight and exits 0. A second signal exits at once.
import { basename, resolve } from "node:path";
import { nodeGpu } from "../gpu/node.ts";
import { nodeModelDir } from "../io/node.ts";
import { startServer } from "../server/server.ts";
import { Engine } from "../text/engine.ts";
import { UsageError } from "./args.ts";
import type { ServeArgs } from "./commands.ts";
import { withLoadProgress } from "./load.ts";

export async function serve({ positionals, flags: values }: ServeArgs): Promise<number> {
  const { port, "max-length": maxLength, context, "max-queue": maxQueue, "max-inputs": maxInputs, "max-body": maxBodyBytes,
    "max-new-tokens": maxNewTokens } = values;
  if (context !== undefined && context < maxLength) {
    throw new UsageError(`--context must be at least --max-length (${maxLength}), got "${context}"`);
  }
  const apiKey = values["api-key"] ?? (process.env.R3GPU_API_KEY || undefined);

  const db = values.db;
  // Imported only for --db, so that serving without a database does not load LanceDB's native module.
  const database = db === undefined ? undefined : await (await import("../server/search.ts")).openDatabase(db);

  const dirPath = resolve(positionals.MODEL_DIR);
  const modelDir = nodeModelDir(dirPath);
  const { device, info } = await nodeGpu();
  const engine = await withLoadProgress(values, (load) => Engine.load(device, modelDir, {
    // The KV cache serves chat as well as embeddings and search: 4096 tokens unless asked otherwise, and never
    // fewer than an embedding may take.
    maxSeqLen: Math.max(context ?? 4096, maxLength, database?.maxLength ?? 0),
    maxBatch: values["batch-size"],
    ...load,
  }));
  const search = await database?.backend(engine, modelDir);
  const modelId = values["model-id"] ?? basename(dirPath);
  const server = await startServer({
    engine, modelDir: dirPath, modelId, host: values.host, port, apiKey, search, maxLength, truncate: values.truncate, maxQueue,
    maxInputs, maxBodyBytes, maxNewTokens, maxBatchTokens: values["max-batch-tokens"], quiet: values.quiet,
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
