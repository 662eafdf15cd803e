// An OpenAI-compatible HTTP server over one loaded model: embeddings (Search-R3), chat completions (streamed as
// server-sent events on request), the model list, a health check, Prometheus metrics and, with a database, search.
// Requests are batched on the GPU: chat completions and reasoning decode together (a new one joining the running
// batch at the next step, one KV-cache slot each), and the embeddings of concurrent requests go into shared forward
// passes (EmbeddingBatcher) between those steps. Generations wait in a bounded queue for a slot (one slot stays free
// for embeddings, so that no embedding waits behind a long generation); tokenizing happens in a worker thread, so
// that none of it keeps the event loop from answering other clients. A model of one slot serves one job at a time.
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DEFAULT_REASONING_TOKENS, SearchR3, type Reasoning } from "../search/searchr3.ts";
import type { Engine } from "../text/engine.ts";
import type { GenerateOptions, GenerateResult } from "../text/generate.ts";
import { TokenizerInputError } from "../text/tokenizer.ts";
import { EmbeddingBatcher } from "./batcher.ts";
import { ApiError, badRequest, EventStream, readJsonBody, sendError, sendJson } from "./http.ts";
import { CONTENT_TYPE, Counter, Gauge, Histogram, Registry } from "./metrics.ts";
import { GpuQueue, JobAbortedError, QueueFullError, type Work } from "./queue.ts";
import { parseChatRequest, parseEmbeddingsRequest, parseSearchRequest, type ChatRequest } from "./requests.ts";
import { cutToBytes, TokenizerThread, tokenizerBytes } from "./tokenizer-thread.ts";

/** What `/search` needs from a database; `serve --db` provides it. */
export interface SearchBackend {
  /** The longest token sequence a query embedding takes (the index's max_length). */
  maxLength: number;
  /**
   * The k best matches for a query (embedded directly, or after the model reasons about it). Runs in a GPU slot;
   * once `signal` fires, stops reasoning at the next token and rejects with JobAbortedError.
   */
  search(query: string, opts: { k: number; reasoning: boolean; maxNewTokens: number; signal: AbortSignal }): Promise<SearchResponse>;
}

export interface SearchResponse {
  results: object[];
  /** When the model reasoned: what it wrote (without the embed token), and how that ended. */
  reasoning?: { text: string; emittedEmbedToken: boolean; stopReason: Reasoning["stopReason"]; tokens: number };
  /** Whether the query (or the reasoned text) was cut to max_length. */
  truncated: boolean;
  /** Tokens of the query's prompt as the model ran it. */
  promptTokens: number;
}

export interface ServerOptions {
  engine: Engine;
  /** The engine's model folder: a worker thread loads its tokenizer (see tokenizer-thread.ts). */
  modelDir: string;
  /** A thread already started on modelDir, to share between servers; the server leaves it running at close. */
  tokenizerThread?: TokenizerThread;
  /** The name the server answers to and reports (OpenAI's `model`). */
  modelId: string;
  /** Default 127.0.0.1: only this machine can connect unless another address is asked for. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** When set, every route but /health needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  search?: SearchBackend;
  /** Longest token sequence an embedding sees, prompt included (Search-R3's max_length). Default 1024. */
  maxLength?: number;
  /** Cut embedding inputs over maxLength instead of refusing them with a 400. Default false. */
  truncate?: boolean;
  /** Requests that may wait for the GPU while one runs; more get 503. Default 64. */
  maxQueue?: number;
  /** Strings per embeddings request. Default 256. */
  maxInputs?: number;
  /** Default 4 MiB. */
  maxBodyBytes?: number;
  /** Largest k of /search. Default 100. */
  maxK?: number;
  /** The cap on reasoning tokens where a request sets no max_new_tokens. Default DEFAULT_REASONING_TOKENS (256). */
  maxNewTokens?: number;
  /** Prompt tokens of the embedding requests batched into one run (text-embeddings-inference's --max-batch-tokens). Default 4096. */
  maxBatchTokens?: number;
  /** Leave out the line per request. Default false. */
  quiet?: boolean;
  /** Where request lines, warnings and unexpected errors go. Default console.error. */
  log?: (message: string) => void;
}

export interface RunningServer {
  url: string;
  queue: GpuQueue;
  /** Stops accepting connections, lets the requests in flight finish, then resolves. */
  close(): Promise<void>;
}

/** One request as a handler sees it: fired when the client goes away, and the tokens it ran, for the log and metrics. */
interface Exchange {
  signal: AbortSignal;
  promptTokens: number;
  completionTokens: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, x: Exchange) => Promise<void>;

const EMBED_TOKEN = "<|embed_token|>";
/** Tokens of the embedding requests batched together: a run of a few seconds on a CPU adapter, far less on a GPU. */
const DEFAULT_MAX_BATCH_TOKENS = 4096;
/** The status logged for a request whose client left before its response was complete (nginx's convention). */
const CLIENT_CLOSED = 499;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { engine, modelId } = opts;
  const { model, tokenizer } = engine;
  const maxBodyBytes = opts.maxBodyBytes ?? 4 << 20;
  const maxInputs = opts.maxInputs ?? 256;
  const maxNewTokens = opts.maxNewTokens ?? DEFAULT_REASONING_TOKENS;
  const log = opts.log ?? ((message: string) => console.error(message));
  const maxQueue = opts.maxQueue ?? 64;
  // One slot kept for embeddings where there are several; with one, jobs take turns.
  const queue = new GpuQueue(maxQueue, Math.max(1, model.maxBatch - 1));
  const thread = opts.tokenizerThread ?? new TokenizerThread(opts.modelDir, { vocabSize: model.config.vocabSize, maxSeqLen: model.maxSeqLen });
  const startedAt = Math.floor(Date.now() / 1000);
  const embedLength = opts.maxLength ?? Math.min(1024, model.maxSeqLen);
  // A plain Qwen2 model can still chat; embeddings need a Search-R3 tokenizer with the embed token. Truncation is
  // reported per text (prepare's and generate's), so the warning callback has nothing left to say.
  const embedder = tokenizer.tokenId(EMBED_TOKEN) !== undefined && engine.chatTemplate
    ? new SearchR3(engine, { maxLength: embedLength, onWarning: () => {} })
    : undefined;
  const batcher = embedder && new EmbeddingBatcher(embedder, opts.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS);
  // The chat template ends an assistant turn with the tokenizer's EOS (<|im_end|>), which config.json may not list.
  const chatStopIds = tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId];
  // Digests have equal lengths whatever the key lengths, as timingSafeEqual requires.
  const keyDigest = opts.apiKey === undefined ? undefined : sha256(opts.apiKey);

  const metrics = new Registry();
  const requestsTotal = metrics.add(new Counter("r3gpu_requests_total", "HTTP requests answered, by method, route and status."));
  const tokensTotal = metrics.add(new Counter("r3gpu_tokens_total",
    "Tokens the model ran, by route and kind (prompt: read in; completion: generated)."));
  const requestSeconds = metrics.add(new Histogram("r3gpu_request_duration_seconds", "Time from a request's arrival to its response's end."));
  const queueSeconds = metrics.add(new Histogram("r3gpu_queue_wait_seconds", "Time a GPU job waited in the queue before it ran."));
  metrics.add(new Gauge("r3gpu_queue_running", "GPU jobs running (batched together on the GPU).", () => queue.stats.running));
  metrics.add(new Gauge("r3gpu_embedding_batches", "Forward batches of embeddings run so far.", () => batcher?.batches ?? 0));
  metrics.add(new Gauge("r3gpu_queue_waiting", "GPU jobs waiting for the GPU.", () => queue.stats.waiting));
  metrics.add(new Gauge("r3gpu_queue_max_waiting", "GPU jobs that may wait before requests get 503.", () => queue.maxWaiting));

  /** A GPU job, timed from its arrival in the queue. */
  const gpu = <T>(work: Work<T>, signal: AbortSignal): Promise<T> => {
    const queued = performance.now();
    return queue.run((jobSignal) => {
      queueSeconds.observe({}, (performance.now() - queued) / 1000);
      return work(jobSignal);
    }, signal);
  };

  /** Text that cannot fit in maxTokens tokens, found without tokenizing it: see tokenizerBytes. */
  async function byteLimit(maxTokens: number) {
    const perToken = await thread.maxTokenBytes;
    return { limit: maxTokens * perToken, perToken };
  }

  /**
   * Embeddings of prepared texts through the batcher: on a model of several slots at once (they wait for the running
   * batch of embeddings, never for generations), on a model of one slot as a job of the queue.
   */
  const embed = (ids: number[][], signal: AbortSignal): Promise<Float32Array[]> => model.maxBatch > 1
    ? batcher!.embed(ids, signal)
    : gpu((jobSignal) => batcher!.embed(ids, jobSignal), signal);

  const embeddings: Handler = async (req, res, x) => {
    const body = parseEmbeddingsRequest(await readJsonBody(req, maxBodyBytes),
      { modelId, dimensions: model.config.hiddenSize, maxInputs });
    if (!embedder) {
      throw badRequest(`'${modelId}' has no ${EMBED_TOKEN} token, so it cannot make Search-R3 embeddings.`, "model", "model_not_supported");
    }
    const { limit, perToken } = await byteLimit(embedLength);
    const texts = body.input.map((text, i) => {
      const bytes = tokenizerBytes(text);
      if (bytes <= limit) return text;
      if (opts.truncate) return cutToBytes(text, limit);
      throw badRequest(`'input[${i}]' is ${bytes} bytes, over max_length ${embedLength} tokens of at most ${perToken} bytes ` +
        `each (${limit} bytes); shorten it, or start the server with --truncate to have it cut.`, "input", "context_length_exceeded");
    });
    const prepared = await thread.prepare(texts, body.kind, embedLength, x.signal);
    const over = prepared.find((p) => p.truncation);
    if (over && !opts.truncate) {
      const t = over.truncation!;
      throw badRequest(`'input[${t.index}]' is ${t.tokens} tokens with the ${body.kind} prompt, over max_length ` +
        `${t.maxLength}; shorten it, or start the server with --truncate to have it cut.`, "input", "context_length_exceeded");
    }
    // SearchR3 tokenizes a query it reasons about on this thread: an over-long one goes in cut to max_length tokens,
    // which SearchR3 then cuts to its prompt's room as it would have the whole.
    const queries = body.reasoning
      ? await Promise.all(texts.map(async (t, i) => prepared[i].truncation ? (await thread.head(t, embedLength, x.signal)).text : t))
      : texts;
    const cap = body.maxNewTokens ?? maxNewTokens;
    let items: { vector: Float32Array; promptTokens: number; truncated: boolean; thought?: Reasoning }[];
    if (!body.reasoning) {
      const vectors = await embed(prepared.map((p) => p.ids), x.signal);
      items = prepared.map((p, i) => ({ vector: vectors[i], promptTokens: p.ids.length, truncated: p.truncation !== undefined }));
    } else {
      // The queries reason together (one job, batched in the scheduler); their texts, fitted to max_length, embed together.
      const thoughts = await gpu((jobSignal) => embedder.generate(queries, { maxNewTokens: cap, signal: jobSignal }), x.signal);
      if (x.signal.aborted) throw new JobAbortedError();
      const vectors = await embed(thoughts.map((t) => embedder.prepare(t.text, "query").ids), x.signal);
      items = thoughts.map((thought, i) => ({
        vector: vectors[i], promptTokens: thought.generation.prefillTokens, truncated: thought.truncations.length > 0, thought,
      }));
    }
    x.promptTokens = items.reduce((n, e) => n + e.promptTokens, 0);
    x.completionTokens = items.reduce((n, e) => n + (e.thought?.generation.ids.length ?? 0), 0);
    sendJson(res, 200, {
      object: "list",
      data: items.map(({ vector: v, truncated, thought }, index) => ({
        object: "embedding",
        index,
        embedding: body.encodingFormat === "base64"
          ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")
          : Array.from(v),
        truncated,
        ...thought && {
          reasoning: thought.reasoning,
          emitted_embed_token: thought.emittedEmbedToken,
          stop_reason: thought.stopReason,
          reasoning_tokens: thought.generation.ids.length,
        },
      })),
      model: modelId,
      usage: {
        prompt_tokens: x.promptTokens,
        ...body.reasoning && { completion_tokens: x.completionTokens },
        total_tokens: x.promptTokens + x.completionTokens,
      },
    });
  };

  const chat: Handler = async (req, res, x) => {
    const r = parseChatRequest(await readJsonBody(req, maxBodyBytes), { modelId });
    const promptIds = await chatPrompt(r, x.signal);
    const options = generateOptions(r);
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const head = (object: string) => ({ id, object, created, model: modelId });
    const usage = (result: GenerateResult) => ({
      prompt_tokens: promptIds.length,
      completion_tokens: result.ids.length,
      total_tokens: promptIds.length + result.ids.length,
    });
    x.promptTokens = promptIds.length;
    const generation = (onStart: () => void, onText: (text: string) => void) => gpu(async (jobSignal) => {
      onStart();
      // A client that goes away leaves the batch before its next token.
      const stream = engine.generateStream({ ids: promptIds }, { ...options, signal: jobSignal });
      for (;;) {
        if (jobSignal.aborted) throw new JobAbortedError();
        const step = await stream.next();
        if (step.done) {
          x.completionTokens = step.value.ids.length;
          return step.value;
        }
        onText(step.value);
      }
    }, x.signal);
    if (!r.stream) {
      const result = await generation(() => {}, () => {});
      sendJson(res, 200, {
        ...head("chat.completion"),
        choices: [{
          index: 0,
          message: { role: "assistant", content: result.text, refusal: null },
          logprobs: null,
          finish_reason: finishReason(result),
        }],
        usage: usage(result),
      });
      return;
    }
    // Headers go out when the job starts, so that a full queue or a bad request still gets a plain error status.
    let events: EventStream | undefined;
    const chunk = (delta: object, finish: string | null) =>
      ({ ...head("chat.completion.chunk"), choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
    try {
      const result = await generation(() => {
        events = new EventStream(res);
        events.send(chunk({ role: "assistant", content: "" }, null));
      }, (text) => events!.send(chunk({ content: text }, null)));
      events!.send(chunk({}, finishReason(result)));
      if (r.includeUsage) events!.send({ ...head("chat.completion.chunk"), choices: [], usage: usage(result) });
      events!.done();
    } catch (e) {
      if (!events) throw e;
      if (!(e instanceof JobAbortedError)) events.fail(internalError(e, log));
    }
  };

  async function chatPrompt(r: ChatRequest, signal: AbortSignal): Promise<number[]> {
    if (!engine.chatTemplate) {
      throw badRequest(`'${modelId}' has no chat template, so it cannot take chat messages.`, "model", "model_not_supported");
    }
    const { limit, perToken } = await byteLimit(model.maxSeqLen);
    const bytes = r.messages.reduce((n, m) => n + tokenizerBytes(m.content), 0);
    if (bytes > limit) {
      throw badRequest(`The messages are ${bytes} bytes; this server's context holds ${model.maxSeqLen} tokens of at ` +
        `most ${perToken} bytes each (${limit} bytes), prompt and completion together.`, "messages", "context_length_exceeded");
    }
    let text: string;
    try {
      text = engine.chatTemplate.render(r.messages, { addGenerationPrompt: true });
    } catch (e) {
      throw badRequest(`The model's chat template refused the messages: ${(e as Error).message}`, "messages");
    }
    const ids = await thread.encode(text, signal);
    if (ids.length >= model.maxSeqLen) {
      throw badRequest(`The messages are ${ids.length} tokens; this server's context holds ${model.maxSeqLen}, ` +
        "prompt and completion together.", "messages", "context_length_exceeded");
    }
    return ids;
  }

  /** Options the request leaves out fall back to the model's generation_config.json. */
  function generateOptions(r: ChatRequest): GenerateOptions {
    const options: GenerateOptions = { stopStrings: r.stop, stopIds: chatStopIds, skipSpecialTokens: true };
    if (r.maxTokens !== undefined) options.maxNewTokens = r.maxTokens;
    if (r.temperature !== undefined) {
      options.doSample = r.temperature > 0;
      if (r.temperature > 0) options.temperature = r.temperature;
    }
    if (r.topP !== undefined) options.topP = r.topP;
    if (r.seed !== undefined) options.seed = r.seed;
    return options;
  }

  const search: Handler = async (req, res, x) => {
    const backend = opts.search;
    if (!backend) {
      throw new ApiError(404, "This server has no search database: /search needs it started with --db DB_DIR.",
        "invalid_request_error", null, "no_database");
    }
    const r = parseSearchRequest(await readJsonBody(req, maxBodyBytes), { modelId, maxK: opts.maxK ?? 100 });
    // A long query is cut, as SearchR3 cuts it to max_length: first to the bytes that many tokens can hold (at
    // once), then to max_length tokens (in the thread), so that SearchR3 tokenizes no more than that on this one.
    const { limit } = await byteLimit(backend.maxLength);
    const query = tokenizerBytes(r.query) > limit ? cutToBytes(r.query, limit) : r.query;
    const head = await thread.head(query, backend.maxLength, x.signal);
    const found = await gpu((jobSignal) => backend.search(head.text, {
      k: r.k, reasoning: r.reasoning, maxNewTokens: r.maxNewTokens ?? maxNewTokens, signal: jobSignal,
    }), x.signal);
    x.promptTokens = found.promptTokens;
    x.completionTokens = found.reasoning?.tokens ?? 0;
    sendJson(res, 200, {
      model: modelId,
      query: r.query,
      k: r.k,
      results: found.results,
      ...found.reasoning && {
        reasoning: found.reasoning.text,
        emitted_embed_token: found.reasoning.emittedEmbedToken,
        stop_reason: found.reasoning.stopReason,
      },
      truncated: found.truncated,
      usage: { prompt_tokens: x.promptTokens, completion_tokens: x.completionTokens, total_tokens: x.promptTokens + x.completionTokens },
    });
  };

  const modelCard = { id: modelId, object: "model", created: startedAt, owned_by: "r3gpu" };
  /** Each route under its metrics label: the path, but for the model route, whose path holds the model id. */
  const routes: Record<string, { label: string; methods: Record<string, Handler> }> = {
    "/health": { label: "/health", methods: { GET: async (_req, res) => sendJson(res, 200, { status: "ok", model: modelId, queue: queue.stats }) } },
    "/metrics": {
      label: "/metrics",
      methods: {
        GET: async (_req, res) => {
          const text = metrics.text();
          res.writeHead(200, { "content-type": CONTENT_TYPE, "content-length": Buffer.byteLength(text) });
          res.end(text);
        },
      },
    },
    "/v1/models": { label: "/v1/models", methods: { GET: async (_req, res) => sendJson(res, 200, { object: "list", data: [modelCard] }) } },
    [`/v1/models/${modelId}`]: { label: "/v1/models/{model}", methods: { GET: async (_req, res) => sendJson(res, 200, modelCard) } },
    "/v1/embeddings": { label: "/v1/embeddings", methods: { POST: embeddings } },
    "/v1/chat/completions": { label: "/v1/chat/completions", methods: { POST: chat } },
    "/search": { label: "/search", methods: { POST: search } },
  };

  const inFlight = new Set<ServerResponse>();
  let closing = false;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    inFlight.add(res);
    const cancel = new AbortController();
    const x: Exchange = { signal: cancel.signal, promptTokens: 0, completionTokens: 0 };
    let label = "unmatched";
    res.on("close", () => {
      inFlight.delete(res);
      if (!res.writableFinished) cancel.abort();
      const status = res.writableFinished ? res.statusCode : CLIENT_CLOSED;
      const seconds = (performance.now() - t0) / 1000;
      requestsTotal.inc({ method: req.method ?? "", route: label, status: String(status) });
      if (x.promptTokens) tokensTotal.inc({ route: label, kind: "prompt" }, x.promptTokens);
      if (x.completionTokens) tokensTotal.inc({ route: label, kind: "completion" }, x.completionTokens);
      requestSeconds.observe({ route: label }, seconds);
      // The path as sent, without the query string (which may carry secrets); Node refuses control characters in it.
      const path = (req.url ?? "").split("?")[0].slice(0, 200);
      if (!opts.quiet) {
        log(`r3gpu serve: ${req.method} ${path} ${status} ${x.promptTokens + x.completionTokens} tokens ${(seconds * 1000).toFixed(1)} ms`);
      }
    });
    try {
      if (closing) {
        throw new ApiError(503, "The server is shutting down.", "server_error", null, "shutting_down", { connection: "close" });
      }
      const path = decodePath(new URL(req.url ?? "/", "http://localhost").pathname).replace(/\/+$/, "") || "/";
      // Before the route: a client without the key learns nothing about which routes and methods exist.
      if (keyDigest && path !== "/health" && !keyMatches(req.headers.authorization, keyDigest)) {
        throw new ApiError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
          "invalid_request_error", null, "invalid_api_key", { "www-authenticate": "Bearer" });
      }
      const route = routes[path];
      if (!route && path.startsWith("/v1/models/")) {
        throw new ApiError(404, `The model '${path.slice("/v1/models/".length)}' does not exist; ` +
          `this server serves '${modelId}'.`, "invalid_request_error", "model", "model_not_found");
      }
      if (!route) throw new ApiError(404, `Invalid URL (${req.method} ${path}).`, "invalid_request_error", null, "unknown_url");
      label = route.label;
      // HEAD is GET without the body, which Node leaves out of a HEAD response by itself.
      const methods = route.methods.GET ? { ...route.methods, HEAD: route.methods.GET } : route.methods;
      const handler = methods[req.method ?? ""];
      if (!handler) {
        throw new ApiError(405, `${path} does not take ${req.method}; use ${Object.keys(methods).join(" or ")}.`,
          "invalid_request_error", null, "method_not_allowed", { allow: Object.keys(methods).join(", ") });
      }
      await handler(req, res, x);
    } catch (e) {
      if (e instanceof JobAbortedError || res.destroyed) return;
      const err = e instanceof QueueFullError
        ? new ApiError(503, `The server is busy: ${queue.maxWaiting} requests are already waiting for the GPU. Retry later.`,
          "server_error", null, "queue_full", { "retry-after": String(e.retryAfterSeconds) })
        : e instanceof ApiError ? e : e instanceof TokenizerInputError ? badRequest(e.message, null, "input_too_long") : internalError(e, log);
      if (res.headersSent) res.destroy();
      else sendError(res, err);
    }
  }

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8080, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  if (!keyDigest && !isLoopback(address.address)) {
    log(`r3gpu serve: warning: listening on ${host} without an API key: anyone who can reach this address can use ` +
      "the model. Set R3GPU_API_KEY (or --api-key), or keep --host at 127.0.0.1.");
  }

  let closed: Promise<void> | undefined;
  const close = () => closed ??= (async () => {
    closing = true;
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    // server.close() drops idle keep-alive sockets; responses still to start tell their client not to reuse theirs.
    for (const res of inFlight) if (!res.headersSent) res.setHeader("connection", "close");
    while (inFlight.size > 0) await new Promise((resolve) => inFlight.values().next().value!.once("close", resolve));
    await queue.idle();
    // Only idle keep-alive connections can be left: nothing is answered on them any more.
    server.closeAllConnections();
    await stopped;
    if (!opts.tokenizerThread) await thread.close();
  })();

  return { url: `http://${host}:${address.port}`, queue, close };
}

/** Model ids may hold characters that arrive percent-encoded ("/" in "Qwen/Qwen2.5-1.5B"). */
function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6; not 0.0.0.0 or ::, which listen on every interface. */
function isLoopback(address: string): boolean {
  return /^(::ffff:)?127\./i.test(address) || address === "::1";
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function keyMatches(header: string | undefined, digest: Buffer): boolean {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
  return given !== undefined && timingSafeEqual(sha256(given), digest);
}

function finishReason(result: GenerateResult): "stop" | "length" {
  return result.stopReason === "length" || result.stopReason === "context" ? "length" : "stop";
}

function internalError(e: unknown, log: (message: string) => void): ApiError {
  if (e instanceof ApiError) return e;
  log(`r3gpu serve: ${(e as Error)?.stack ?? e}`);
  return new ApiError(500, `Internal error: ${(e as Error)?.message ?? e}`, "server_error", null, "internal_error");
}
