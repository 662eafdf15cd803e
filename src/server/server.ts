// An OpenAI-compatible HTTP server over one loaded model: embeddings (Search-R3), chat completions (streamed as
// server-sent events on request), the model list, a health check and, with a database, search. Every GPU job goes
// through one bounded queue, since the model holds one sequence at a time.
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SearchR3 } from "../search/searchr3.ts";
import type { Engine, GenerateOptions, GenerateResult } from "../text/generate.ts";
import { TokenizerInputError } from "../text/tokenizer.ts";
import { ApiError, badRequest, EventStream, readJsonBody, sendError, sendJson } from "./http.ts";
import { GpuQueue, JobAbortedError, QueueFullError } from "./queue.ts";
import { parseChatRequest, parseEmbeddingsRequest, parseSearchRequest, type ChatRequest } from "./requests.ts";

/** What `/search` needs from a database; `serve --db` provides it. */
export interface SearchBackend {
  /** The k best matches for a query (embedded directly, or after the model reasons about it). Runs in a GPU slot. */
  search(query: string, k: number, reasoning: boolean): Promise<SearchResponse>;
}

export interface SearchResponse {
  results: object[];
  /** What the model wrote about the query, when it reasoned. */
  reasoning?: string;
}

export interface ServerOptions {
  engine: Engine;
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
  /** Where unexpected errors are reported. Default console.error. */
  log?: (message: string) => void;
}

export interface RunningServer {
  url: string;
  queue: GpuQueue;
  /** Stops accepting connections, lets the requests in flight finish, then resolves. */
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, signal: AbortSignal) => Promise<void>;

const EMBED_TOKEN = "<|embed_token|>";

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { engine, modelId } = opts;
  const { model, tokenizer } = engine;
  const maxBodyBytes = opts.maxBodyBytes ?? 4 << 20;
  const maxInputs = opts.maxInputs ?? 256;
  const log = opts.log ?? ((message: string) => console.error(message));
  const queue = new GpuQueue(opts.maxQueue ?? 64);
  const startedAt = Math.floor(Date.now() / 1000);
  // A plain Qwen2 model can still chat; embeddings need a Search-R3 tokenizer with the embed token.
  const embedder = tokenizer.tokenId(EMBED_TOKEN) !== undefined && engine.chatTemplate
    ? new SearchR3(engine, { maxLength: opts.maxLength ?? Math.min(1024, model.maxSeqLen), onWarning: () => {} })
    : undefined;
  // The chat template ends an assistant turn with the tokenizer's EOS (<|im_end|>), which config.json may not list.
  const chatStopIds = tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId];
  // Digests have equal lengths whatever the key lengths, as timingSafeEqual requires.
  const keyDigest = opts.apiKey === undefined ? undefined : sha256(opts.apiKey);

  const embeddings: Handler = async (req, res, signal) => {
    const body = parseEmbeddingsRequest(await readJsonBody(req, maxBodyBytes),
      { modelId, dimensions: model.config.hiddenSize, maxInputs });
    if (!embedder) {
      throw badRequest(`'${modelId}' has no ${EMBED_TOKEN} token, so it cannot make Search-R3 embeddings.`, "model", "model_not_supported");
    }
    const prepared = body.input.map((text, i) => embedder.prepare(text, "document", i));
    const over = prepared.find((p) => p.truncation);
    if (over && !opts.truncate) {
      const t = over.truncation!;
      throw badRequest(`'input[${t.index}]' is ${t.tokens} tokens with the document prompt, over max_length ` +
        `${t.maxLength}; shorten it, or start the server with --truncate to have it cut.`, "input", "context_length_exceeded");
    }
    const vectors = await queue.run(async (jobSignal) => {
      const out: Float32Array[] = [];
      for (const text of body.input) {
        if (jobSignal.aborted) throw new JobAbortedError();
        out.push((await embedder.encode([text]))[0]);
      }
      return out;
    }, signal);
    const tokens = prepared.reduce((n, p) => n + p.ids.length, 0);
    sendJson(res, 200, {
      object: "list",
      data: vectors.map((v, index) => ({
        object: "embedding",
        index,
        embedding: body.encodingFormat === "base64"
          ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")
          : Array.from(v),
      })),
      model: modelId,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  };

  const chat: Handler = async (req, res, signal) => {
    const r = parseChatRequest(await readJsonBody(req, maxBodyBytes), { modelId });
    const promptIds = chatPrompt(r);
    const options = generateOptions(r);
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const head = (object: string) => ({ id, object, created, model: modelId });
    const usage = (result: GenerateResult) => ({
      prompt_tokens: promptIds.length,
      completion_tokens: result.ids.length,
      total_tokens: promptIds.length + result.ids.length,
    });
    const generation = (onStart: () => void, onText: (text: string) => void) => queue.run(async (jobSignal) => {
      onStart();
      const stream = engine.generateStream({ ids: promptIds }, options);
      for (;;) {
        // Between tokens: a client that went away frees the GPU after at most one more step.
        if (jobSignal.aborted) throw new JobAbortedError();
        const step = await stream.next();
        if (step.done) return step.value;
        onText(step.value);
      }
    }, signal);

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

  function chatPrompt(r: ChatRequest): number[] {
    if (!engine.chatTemplate) {
      throw badRequest(`'${modelId}' has no chat template, so it cannot take chat messages.`, "model", "model_not_supported");
    }
    let text: string;
    try {
      text = engine.chatTemplate.render(r.messages, { addGenerationPrompt: true });
    } catch (e) {
      throw badRequest(`The model's chat template refused the messages: ${(e as Error).message}`, "messages");
    }
    const ids = tokenizer.encode(text);
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

  const search: Handler = async (req, res, signal) => {
    const backend = opts.search;
    if (!backend) {
      throw new ApiError(404, "This server has no search database: /search needs it started with --db DB_DIR.",
        "invalid_request_error", null, "no_database");
    }
    const r = parseSearchRequest(await readJsonBody(req, maxBodyBytes), { maxK: opts.maxK ?? 100 });
    const found = await queue.run(() => backend.search(r.query, r.k, r.reasoning), signal);
    sendJson(res, 200, { model: modelId, query: r.query, k: r.k, ...found });
  };

  const modelCard = { id: modelId, object: "model", created: startedAt, owned_by: "r3gpu" };
  const routes: Record<string, Record<string, Handler>> = {
    "/health": {
      GET: async (_req, res) => sendJson(res, 200, { status: "ok", model: modelId, queue: queue.stats }),
    },
    "/v1/models": { GET: async (_req, res) => sendJson(res, 200, { object: "list", data: [modelCard] }) },
    [`/v1/models/${modelId}`]: { GET: async (_req, res) => sendJson(res, 200, modelCard) },
    "/v1/embeddings": { POST: embeddings },
    "/v1/chat/completions": { POST: chat },
    "/search": { POST: search },
  };

  const inFlight = new Set<ServerResponse>();
  let closing = false;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    inFlight.add(res);
    const cancel = new AbortController();
    res.on("close", () => {
      inFlight.delete(res);
      if (!res.writableFinished) cancel.abort();
    });
    try {
      if (closing) {
        throw new ApiError(503, "The server is shutting down.", "server_error", null, "shutting_down", { connection: "close" });
      }
      const path = decodePath(new URL(req.url ?? "/", "http://localhost").pathname).replace(/\/+$/, "") || "/";
      const route = routes[path];
      if (!route && path.startsWith("/v1/models/")) {
        throw new ApiError(404, `The model '${path.slice("/v1/models/".length)}' does not exist; ` +
          `this server serves '${modelId}'.`, "invalid_request_error", "model", "model_not_found");
      }
      if (!route) throw new ApiError(404, `Invalid URL (${req.method} ${path}).`, "invalid_request_error", null, "unknown_url");
      const handler = route[req.method ?? ""];
      if (!handler) {
        throw new ApiError(405, `${path} does not take ${req.method}; use ${Object.keys(route).join(" or ")}.`,
          "invalid_request_error", null, "method_not_allowed", { allow: Object.keys(route).join(", ") });
      }
      if (keyDigest && path !== "/health" && !keyMatches(req.headers.authorization, keyDigest)) {
        throw new ApiError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
          "invalid_request_error", null, "invalid_api_key", { "www-authenticate": "Bearer" });
      }
      await handler(req, res, cancel.signal);
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
