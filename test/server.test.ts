// The HTTP server, driven over real HTTP on loopback ports: golden embeddings, chat (plain, streamed, sampled),
// concurrent clients, bad input, the queue bound, disconnects, the API key, the README examples, and SIGTERM.
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import OpenAI from "openai";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { indexCorpus } from "../src/search/indexing.ts";
import { modelIdentity } from "../src/search/model-identity.ts";
import { indexSettings } from "../src/search/settings.ts";
import { SearchIndex } from "../src/search/store.ts";
import { SearchR3 } from "../src/search/searchr3.ts";
import { openDatabase } from "../src/server/search.ts";
import { startServer, type RunningServer, type ServerOptions } from "../src/server/server.ts";
import { TokenizerThread } from "../src/server/tokenizer-thread.ts";
import { Engine } from "../src/text/engine.ts";
import type { GenerateOptions } from "../src/text/generate.ts";
import { embeddedModelDir, repoRoot } from "./shared-paths.ts";

const run = promisify(execFile);
const tinyDir = embeddedModelDir();
const MODEL = "tiny-qwen2";
const IM_END = 151645;
const golden = JSON.parse(await readFile(join(tinyDir, "search-golden.json"), "utf8"));
const documents: { input: string; embed_ids: number[]; hidden_normalized: number[] }[] = golden.documents;

const { device } = await nodeGpu();
const engine = await Engine.load(device, nodeModelDir(tinyDir), { maxSeqLen: 4096 });
/** The reference for what the server should answer, run directly on the same engine while no server job runs. */
const r3 = new SearchR3(engine, { onWarning: () => {} });
/** One tokenizer thread for every server here, so that each does not load its own. */
const tokenizerThread = new TokenizerThread(tinyDir, { vocabSize: engine.model.config.vocabSize, maxSeqLen: engine.model.maxSeqLen });

const servers: RunningServer[] = [];
async function start(opts: Partial<ServerOptions> = {}): Promise<RunningServer> {
  const s = await startServer({ engine, modelDir: tinyDir, tokenizerThread, modelId: MODEL, port: 0, log: () => {}, ...opts });
  servers.push(s);
  return s;
}
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await tokenizerThread.close();
});

/** Within 1e-4 x max|ref|, the golden tolerance. */
function assertEmbedding(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, what);
  let maxRef = 0, err = 0;
  for (let i = 0; i < want.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  assert.ok(err <= 1e-4 * maxRef, `${what}: max abs error ${err} > 1e-4 x ${maxRef}`);
}

interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

async function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Reply> {
  const res = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function get(base: string, path: string): Promise<Reply> {
  const res = await fetch(base + path);
  return { status: res.status, headers: res.headers, body: await res.json() };
}

async function head(base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(base + path, { method: "HEAD", headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** A server whose log lines are kept. */
async function logged(opts: Partial<ServerOptions> = {}) {
  const lines: string[] = [];
  return { s: await start({ log: (m) => lines.push(m), ...opts }), lines };
}

/** Polls /health until `during` settles: how long each answer took, in milliseconds, the slowest, and how many came. */
async function healthDuring(url: string, during: Promise<unknown>) {
  let settled = false;
  during.then(() => { settled = true; }, () => { settled = true; });
  const latencies: number[] = [];
  do {
    const t0 = performance.now();
    assert.equal((await get(url, "/health")).status, 200);
    latencies.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 5));
  } while (!settled);
  return { latencies, worst: Math.max(...latencies), answers: latencies.length };
}

function assertError(r: Reply, status: number, param: string | null, code: string | null, what: string): void {
  assert.equal(r.status, status, `${what}: status (${JSON.stringify(r.body)})`);
  const e = r.body?.error;
  assert.ok(e && typeof e.message === "string" && e.message.length > 0, `${what}: error message`);
  assert.equal(typeof e.type, "string", `${what}: error type`);
  assert.equal(e.param, param, `${what}: param`);
  assert.equal(e.code, code, `${what}: code`);
}

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What the server's greedy chat should produce, computed on the engine directly. */
function expectedChat(content: string, opts: GenerateOptions) {
  return engine.generate([{ role: "user", content }], { stopIds: [IM_END], skipSpecialTokens: true, ...opts });
}

/** The `data:` payloads of a server-sent-event response, as they arrive. */
async function* events(res: Response): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  const reader = res.body!.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      assert.ok(event.startsWith("data: "), `an SSE event: ${event}`);
      yield event.slice("data: ".length);
    }
  }
  assert.equal(buffer, "", "nothing after the last event");
}

/** A whole stream: the text of its content deltas, its finish reason, and whether it ended with [DONE]. */
async function readStream(stream: AsyncIterable<string>) {
  const all: string[] = [];
  for await (const data of stream) all.push(data);
  const chunks = all.filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
  return {
    text: chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""),
    finish: chunks.at(-1)?.choices[0]?.finish_reason,
    done: all.at(-1) === "[DONE]" && all.indexOf("[DONE]") === all.length - 1,
    events: all.length,
  };
}

/** Starts a long greedy stream and returns once its first event has arrived (so that it holds the GPU). */
async function longStream(url: string, signal: AbortSignal) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST", signal,
    body: JSON.stringify({ messages: [{ role: "user", content: "Go on forever." }], max_tokens: 3000, temperature: 0, stream: true }),
  });
  assert.equal(res.status, 200);
  const it = events(res)[Symbol.asyncIterator]();
  await it.next();
  return it;
}

describe("server", () => {
  let server: RunningServer;
  let client: OpenAI;
  before(async () => {
    server = await start();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });

  test("listens on loopback; /health and /v1/models", async () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await get(server.url, "/health");
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: "ok", model: MODEL, queue: { running: 0, waiting: 0, maxWaiting: 64 } });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => [m.id, m.object, m.owned_by]), [[MODEL, "model", "r3gpu"]]);
    assert.equal((await client.models.retrieve(MODEL)).id, MODEL);
  });

  test("the golden document embeddings through /v1/embeddings (float)", async () => {
    const r = await post(server.url, "/v1/embeddings", { model: MODEL, input: documents.map((d) => d.input) });
    assert.equal(r.status, 200);
    assert.equal(r.body.object, "list");
    assert.equal(r.body.model, MODEL);
    assert.equal(r.body.data.length, documents.length);
    documents.forEach((d, i) => {
      assert.equal(r.body.data[i].object, "embedding");
      assert.equal(r.body.data[i].index, i);
      assertEmbedding(r.body.data[i].embedding, d.hidden_normalized, `document ${i}`);
    });
    const tokens = documents.reduce((n, d) => n + d.embed_ids.length, 0);
    assert.deepEqual(r.body.usage, { prompt_tokens: tokens, total_tokens: tokens });
  });

  test("the openai client: embeddings as base64 (its default) and as float, dimensions = hidden size", async () => {
    const b64 = await client.embeddings.create({ model: MODEL, input: documents[1].input });
    assertEmbedding(b64.data[0].embedding, documents[1].hidden_normalized, "base64");
    assert.equal(b64.usage.prompt_tokens, documents[1].embed_ids.length);
    const float = await client.embeddings.create({
      model: MODEL, input: [documents[2].input], encoding_format: "float", dimensions: 64,
    });
    assertEmbedding(float.data[0].embedding, documents[2].hidden_normalized, "float");
  });

  test("chat completion (greedy) equals generation on the engine", async () => {
    const want = await expectedChat("Hello!", { maxNewTokens: 8, doSample: false });
    const c = await client.chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Hello!" }], max_tokens: 8, temperature: 0,
    });
    assert.equal(c.object, "chat.completion");
    assert.equal(c.model, MODEL);
    assert.match(c.id, /^chatcmpl-/);
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].message.role, "assistant");
    assert.equal(c.choices[0].message.content, want.text);
    assert.equal(c.choices[0].finish_reason, want.stopReason === "length" ? "length" : "stop");
    assert.deepEqual(c.usage, {
      prompt_tokens: want.prefillTokens, completion_tokens: want.ids.length, total_tokens: want.prefillTokens + want.ids.length,
    });
  });

  test("streamed chat: the openai client's chunks join to the same text, with a usage chunk", async () => {
    const want = await expectedChat("Tell me a story.", { maxNewTokens: 12, doSample: false });
    const stream = await client.chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 12, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    assert.equal(text, want.text);
    assert.ok(chunks.length > 3, "the text arrives in pieces");
    assert.equal(chunks.at(-2)!.choices[0].finish_reason, "length");
    assert.deepEqual(chunks.at(-1)!.choices, []);
    assert.equal(chunks.at(-1)!.usage!.completion_tokens, 12);
    assert.ok(chunks.every((c) => c.id === chunks[0].id && c.object === "chat.completion.chunk"));
  });

  test("streamed chat on the wire: text/event-stream, ending with data: [DONE]", async () => {
    const want = await expectedChat("Hi", { maxNewTokens: 3, doSample: false });
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST", body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 3, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const got = await readStream(events(res));
    assert.equal(got.text, want.text);
    assert.equal(got.finish, "length");
    assert.ok(got.done);
  });

  test("sampling with a seed repeats, and matches the engine; stop strings cut the text", async () => {
    const messages = [{ role: "user" as const, content: "Pick a word." }];
    const params = { model: MODEL, messages, max_tokens: 6, temperature: 0.8, top_p: 0.9, seed: 42 };
    const a = await client.chat.completions.create(params);
    const b = await client.chat.completions.create(params);
    const want = await expectedChat("Pick a word.", { maxNewTokens: 6, doSample: true, temperature: 0.8, topP: 0.9, seed: 42 });
    assert.equal(a.choices[0].message.content, want.text);
    assert.equal(b.choices[0].message.content, want.text);

    const long = await expectedChat("Hello!", { maxNewTokens: 8, doSample: false });
    const stop = long.text.slice(long.text.length - 4);
    const cut = await client.chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Hello!" }], max_tokens: 8, temperature: 0, stop: [stop],
    });
    assert.equal(cut.choices[0].message.content, long.text.slice(0, long.text.indexOf(stop)));
    assert.equal(cut.choices[0].finish_reason, "stop");
  });

  test("20 concurrent clients: every one answered with its own result", async () => {
    const texts = Array.from({ length: 10 }, (_, i) => `Document number ${i}: ${"lorem ipsum ".repeat(i + 1)}`);
    const prompts = Array.from({ length: 10 }, (_, i) => `Question ${i}: what is ${i} + ${i}?`);
    const wantVectors = await r3.encode(texts);
    const wantTexts = [];
    for (const p of prompts) wantTexts.push((await expectedChat(p, { maxNewTokens: 4, doSample: false })).text);
    assert.equal(new Set(wantTexts).size > 1, true, "the prompts give different answers");

    let sawWaiting = 0;
    const watching = (async () => {
      for (let i = 0; i < 50; i++) {
        sawWaiting = Math.max(sawWaiting, (await get(server.url, "/health")).body.queue.waiting);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const requests = Array.from({ length: 20 }, (_, i) => {
      const j = i >> 1;
      return i % 2 === 0
        ? post(server.url, "/v1/embeddings", { input: texts[j] }).then((r) => ({ kind: "embedding", j, r }))
        : post(server.url, "/v1/chat/completions", { messages: [{ role: "user", content: prompts[j] }], max_tokens: 4, temperature: 0 })
          .then((r) => ({ kind: "chat", j, r }));
    });
    const replies = await Promise.all(requests);
    await watching;
    for (const { kind, j, r } of replies) {
      assert.equal(r.status, 200, `${kind} ${j}`);
      if (kind === "embedding") assertEmbedding(r.body.data[0].embedding, wantVectors[j], `embedding ${j}`);
      else assert.equal(r.body.choices[0].message.content, wantTexts[j], `chat ${j}`);
    }
    assert.ok(sawWaiting > 0, "requests queued behind one another");
  });

  test("bad input: each gets its 4xx and an OpenAI-style error, and the server keeps serving", async () => {
    const emb = (body: unknown) => post(server.url, "/v1/embeddings", body);
    const chat = (body: object) => post(server.url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], ...body });
    const cases: [string, Promise<Reply>, number, string | null, string | null][] = [
      ["malformed JSON", emb('{"input": "a",'), 400, null, "invalid_json"],
      ["empty body", emb(""), 400, null, "missing_body"],
      ["body not an object", emb("[1, 2]"), 400, null, "invalid_type"],
      ["input missing", emb({}), 400, "input", "missing_required_parameter"],
      ["input a number", emb({ input: 5 }), 400, "input", "invalid_type"],
      ["input token ids", emb({ input: [1, 2, 3] }), 400, "input", "invalid_type"],
      ["input mixed types", emb({ input: ["a", 3] }), 400, "input", "invalid_type"],
      ["input empty array", emb({ input: [] }), 400, "input", "empty_input"],
      ["input empty string", emb({ input: ["a", ""] }), 400, "input", "empty_input"],
      ["too many inputs", emb({ input: Array(257).fill("a") }), 400, "input", "too_many_inputs"],
      ["input over max_length", emb({ input: ["short", "word ".repeat(1500)] }), 400, "input", "context_length_exceeded"],
      ["encoding_format", emb({ input: "a", encoding_format: "int8" }), 400, "encoding_format", "invalid_value"],
      ["dimensions unsupported", emb({ input: "a", dimensions: 32 }), 400, "dimensions", "unsupported_value"],
      ["dimensions a string", emb({ input: "a", dimensions: "64" }), 400, "dimensions", "invalid_type"],
      ["another model", emb({ input: "a", model: "text-embedding-3-small" }), 404, "model", "model_not_found"],
      ["messages missing", post(server.url, "/v1/chat/completions", {}), 400, "messages", "missing_required_parameter"],
      ["messages empty", chat({ messages: [] }), 400, "messages", "empty_input"],
      ["messages not an array", chat({ messages: "Hi" }), 400, "messages", "invalid_type"],
      ["unknown role", chat({ messages: [{ role: "wizard", content: "Hi" }] }), 400, "messages[0].role", "invalid_value"],
      ["content a number", chat({ messages: [{ role: "user", content: 5 }] }), 400, "messages[0].content", "invalid_type"],
      ["image content", chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }),
        400, "messages[0].content", "unsupported_value"],
      ["temperature too high", chat({ temperature: 3 }), 400, "temperature", "invalid_value"],
      ["top_p zero", chat({ top_p: 0 }), 400, "top_p", "invalid_value"],
      ["max_tokens zero", chat({ max_tokens: 0 }), 400, "max_tokens", "invalid_value"],
      ["max_tokens fractional", chat({ max_tokens: 1.5 }), 400, "max_tokens", "invalid_type"],
      ["stop a number", chat({ stop: 7 }), 400, "stop", "invalid_type"],
      ["five stop strings", chat({ stop: ["a", "b", "c", "d", "e"] }), 400, "stop", "invalid_value"],
      ["n = 2", chat({ n: 2 }), 400, "n", "unsupported_value"],
      ["stream not a boolean", chat({ stream: "yes" }), 400, "stream", "invalid_type"],
      ["prompt over the context", chat({ messages: [{ role: "user", content: "word ".repeat(5000) }] }),
        400, "messages", "context_length_exceeded"],
      ["unknown route", post(server.url, "/v1/completions", { prompt: "a" }), 404, null, "unknown_url"],
      ["unknown model route", get(server.url, "/v1/models/gpt-4"), 404, "model", "model_not_found"],
      ["wrong method", get(server.url, "/v1/embeddings"), 405, null, "method_not_allowed"],
      ["search without a database", post(server.url, "/search", { query: "a" }), 404, null, "no_database"],
      ["chat tools", chat({ tools: [{ type: "function", function: { name: "f" } }] }), 400, "tools", "unsupported_parameter"],
      ["chat logprobs", chat({ logprobs: true }), 400, "logprobs", "unsupported_parameter"],
      ["chat response_format", chat({ response_format: { type: "json_object" } }), 400, "response_format", "unsupported_parameter"],
      ["chat presence_penalty", chat({ presence_penalty: 0.5 }), 400, "presence_penalty", "unsupported_parameter"],
      ["chat a misspelt parameter", chat({ max_token: 5 }), 400, "max_token", "unsupported_parameter"],
      ["embeddings truncation (Voyage's)", emb({ input: "a", truncation: false }), 400, "truncation", "unsupported_parameter"],
      ["input_type classification (Cohere's)", emb({ input: "a", input_type: "classification" }), 400, "input_type", "invalid_value"],
      ["input_type a number", emb({ input: "a", input_type: 1 }), 400, "input_type", "invalid_value"],
      ["reasoning about documents", emb({ input: "a", reasoning: true }), 400, "reasoning", "unsupported_value"],
      ["reasoning not a boolean", emb({ input: "a", input_type: "query", reasoning: "yes" }), 400, "reasoning", "invalid_type"],
      ["max_new_tokens without reasoning", emb({ input: "a", input_type: "query", max_new_tokens: 5 }), 400, "max_new_tokens", "unsupported_value"],
      ["max_new_tokens zero", emb({ input: "a", input_type: "query", reasoning: true, max_new_tokens: 0 }), 400, "max_new_tokens", "invalid_value"],
    ];
    for (const [what, reply, status, param, code] of cases) assertError(await reply, status, param, code, what);
    assert.equal((await get(server.url, "/v1/embeddings")).headers.get("allow"), "POST");
    assert.equal((await post(server.url, "/health", {})).headers.get("allow"), "GET, HEAD");
    assert.equal((await get(server.url, "/health")).body.queue.running, 0);
    const ok = await post(server.url, "/v1/embeddings", { input: documents[0].input });
    assertEmbedding(ok.body.data[0].embedding, documents[0].hidden_normalized, "after the bad requests");
  });

  test("a client that disconnects mid-stream frees the GPU at once", async () => {
    const cancel = new AbortController();
    const stream = await longStream(server.url, cancel.signal);
    for (let i = 0; i < 5; i++) await stream.next();
    cancel.abort();
    const t0 = Date.now();
    await until("the generation to stop", async () => (await get(server.url, "/health")).body.queue.running === 0);
    const position = engine.model.position;
    // 3000 tokens would take most of a minute; the job stops within a token or so of the disconnect.
    assert.ok(Date.now() - t0 < 3000, `stopped ${Date.now() - t0} ms after the disconnect`);
    assert.ok(position < 200, `the KV cache holds ${position} tokens, not a finished 3000-token generation`);
    const ok = await post(server.url, "/v1/embeddings", { input: documents[0].input });
    assertEmbedding(ok.body.data[0].embedding, documents[0].hidden_normalized, "after the disconnect");
  });
});

// A model of 4 KV-cache slots: chats decode together (3 at once, one slot kept for embeddings) and concurrent
// embedding requests share forward passes; everything as the same requests give one at a time.
describe("batching", () => {
  let batched: Engine;
  let url: string;
  before(async () => {
    batched = await Engine.load(device, nodeModelDir(tinyDir), { maxSeqLen: 4096, maxBatch: 4 });
    url = (await startServer({ engine: batched, modelDir: tinyDir, tokenizerThread, modelId: MODEL, port: 0, log: () => {} })
      .then((s) => { servers.push(s); return s; })).url;
  });
  after(() => batched.destroy());

  const metric = async (name: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)![1]);
  };

  test("16 concurrent embedding requests share forward passes and each gets its own golden embedding", async () => {
    const before = await metric("r3gpu_embedding_batches");
    const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => post(url, "/v1/embeddings", { input: documents[i % 3].input })));
    replies.forEach((r, i) => {
      assert.equal(r.status, 200);
      assertEmbedding(r.body.data[0].embedding, documents[i % 3].hidden_normalized, `request ${i}`);
    });
    const batches = (await metric("r3gpu_embedding_batches")) - before;
    assert.ok(batches >= 1 && batches < 16, `${batches} forward batches for 16 requests`);
  });

  test("chats decode together, each as it does alone", async () => {
    const prompts = ["Hi", "Tell me a story.", "What is 2+2?"];
    const replies = prompts.map((content, i) => post(url, "/v1/chat/completions", { messages: [{ role: "user", content }], max_tokens: 30 + 10 * i, temperature: 0 }));
    await until("the chats to run together", async () => (await get(url, "/health")).body.queue.running >= 2);
    for (const [i, r] of (await Promise.all(replies)).entries()) {
      assert.equal(r.status, 200);
      assert.equal(r.body.choices[0].message.content, (await expectedChat(prompts[i], { maxNewTokens: 30 + 10 * i, doSample: false })).text, prompts[i]);
    }
  });

  test("an embedding does not wait for a long generation; a client that leaves drops out of the batch", async () => {
    const long = new AbortController();
    const stream = await longStream(url, long.signal);
    const t0 = Date.now();
    const r = await post(url, "/v1/embeddings", { input: documents[1].input });
    assert.equal(r.status, 200);
    assertEmbedding(r.body.data[0].embedding, documents[1].hidden_normalized, "beside the generation");
    assert.equal((await get(url, "/health")).body.queue.running, 1, "the generation still runs");
    assert.ok(Date.now() - t0 < 5000, `the embedding took ${Date.now() - t0} ms beside a 3000-token generation`);
    await stream.next();
    long.abort();
    await until("the generation to leave", async () => (await get(url, "/health")).body.queue.running === 0, 3000);
  });
});

describe("server limits", () => {
  test("a full queue answers 503 with Retry-After; a queued client that leaves frees its place", async () => {
    const s = await start({ maxQueue: 1 });
    const long = new AbortController();
    await longStream(s.url, long.signal);
    const queued = new AbortController();
    const waiting = post(s.url, "/v1/embeddings", { input: "queued" }, {}, queued.signal).catch((e) => e);
    await until("the second request to wait", async () => (await get(s.url, "/health")).body.queue.waiting === 1);

    const full = await post(s.url, "/v1/embeddings", { input: "one too many" });
    assertError(full, 503, null, "queue_full", "full queue");
    assert.ok(Number(full.headers.get("retry-after")) >= 1, "Retry-After in seconds");

    queued.abort();
    assert.equal((await waiting).name, "AbortError");
    await until("the queued request to leave", async () => (await get(s.url, "/health")).body.queue.waiting === 0, 1000);
    assert.equal((await get(s.url, "/health")).body.queue.running, 1, "the stream still runs");
    long.abort();
    await until("the stream to stop", async () => (await get(s.url, "/health")).body.queue.running === 0);
    assert.equal((await post(s.url, "/v1/embeddings", { input: "after" })).status, 200);
  });

  test("bodies over the size limit get 413, announced or streamed, and the server keeps serving", async () => {
    const s = await start({ maxBodyBytes: 1024 });
    const { port } = new URL(s.url);
    const send = (headers: Record<string, string | number>, chunks: string[]) => new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: "/v1/embeddings", method: "POST", headers }, (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (d) => { text += d; }).on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      });
      // The server may answer and close before the client has sent everything.
      req.on("error", (e: NodeJS.ErrnoException) => { if (e.code !== "EPIPE" && e.code !== "ECONNRESET") reject(e); });
      for (const c of chunks) req.write(c);
      req.end();
    });
    const big = JSON.stringify({ input: "x".repeat(4000) });
    const announced = await send({ "content-length": Buffer.byteLength(big), "content-type": "application/json" }, [big]);
    assert.equal(announced.status, 413);
    assert.equal(announced.body.error.code, "request_too_large");
    const streamed = await send({ "transfer-encoding": "chunked" }, [big.slice(0, 800), big.slice(800)]);
    assert.equal(streamed.status, 413);
    assert.equal(streamed.body.error.code, "request_too_large");
    assert.equal((await post(s.url, "/v1/embeddings", { input: "small" })).status, 200);
  });

  test("--truncate: inputs over max_length are cut as SearchR3 cuts them", async () => {
    const s = await start({ truncate: true, maxLength: 64 });
    const long = "a rather long document ".repeat(40);
    const cut = new SearchR3(engine, { maxLength: 64, onWarning: () => {} });
    const [want] = await cut.encode([long]);
    const r = await post(s.url, "/v1/embeddings", { input: long });
    assert.equal(r.status, 200);
    assertEmbedding(r.body.data[0].embedding, want, "truncated");
    assert.equal(r.body.usage.prompt_tokens, 64);
    assert.equal(r.body.data[0].truncated, true);
    assert.equal((await post(s.url, "/v1/embeddings", { input: "short" })).body.data[0].truncated, false);
    // Over the byte bound, cut to it before tokenizing; the first 64 tokens are the same.
    const huge = "a rather long document ".repeat(2000);
    const h = await post(s.url, "/v1/embeddings", { input: huge });
    assert.equal(h.status, 200);
    assert.equal(h.body.data[0].truncated, true);
    assertEmbedding(h.body.data[0].embedding, want, "cut to bytes, then to tokens");
  });

  test("API key: checked on every route but /health", async () => {
    const s = await start({ apiKey: "sekret-key" });
    assertError(await post(s.url, "/v1/embeddings", { input: "a" }), 401, null, "invalid_api_key", "no key");
    for (const key of ["wrong", "sekret-kez", "sekret-key-longer"]) {
      assertError(await post(s.url, "/v1/embeddings", { input: "a" }, { authorization: `Bearer ${key}` }), 401, null, "invalid_api_key", key);
    }
    assert.equal((await get(s.url, "/health")).status, 200);
    const ok = await post(s.url, "/v1/embeddings", { input: "a" }, { authorization: "Bearer sekret-key" });
    assert.equal(ok.status, 200);
    const good = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "sekret-key", maxRetries: 0 });
    assert.equal((await good.models.list()).data[0].id, MODEL);
    const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "nope", maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e: any) => e.status === 401 && e.code === "invalid_api_key");

    // The key comes first: without it, no route or method is told apart from another.
    const auth = { authorization: "Bearer sekret-key" };
    assertError(await post(s.url, "/v1/completions", { prompt: "a" }), 401, null, "invalid_api_key", "unknown route, no key");
    assertError(await get(s.url, "/v1/embeddings"), 401, null, "invalid_api_key", "wrong method, no key");
    assertError(await get(s.url, "/v1/models/gpt-4"), 401, null, "invalid_api_key", "unknown model, no key");
    assertError(await get(s.url, "/metrics"), 401, null, "invalid_api_key", "metrics, no key");
    assertError(await post(s.url, "/v1/completions", { prompt: "a" }, auth), 404, null, "unknown_url", "unknown route, key");
    const wrongMethod = await fetch(`${s.url}/v1/embeddings`, { headers: auth });
    assert.equal(wrongMethod.status, 405);
    assert.equal((await wrongMethod.json()).error.code, "method_not_allowed");
    assert.equal((await fetch(`${s.url}/metrics`, { headers: auth })).status, 200);
    const h = await head(s.url, "/health");
    assert.equal(h.status, 200, "HEAD /health needs no key");
    assert.equal(h.text, "");
  });
});

const queries: { input: string; hidden_normalized: number[] }[] = golden.queries;

/** `name{label="value",...}` -> value, for every sample of a Prometheus text exposition; checks each line's form. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const described = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const comment = /^# (HELP|TYPE) (\w+) (.+)$/.exec(line);
    if (comment) {
      if (comment[1] === "TYPE") described.add(comment[2]);
      continue;
    }
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels = [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    assert.ok([...described].some((name) => m[1].startsWith(name)), `${m[1]} has a # TYPE line`);
    samples.set(`${m[1]}{${labels.join(",")}}`, Number(m[3]));
  }
  return samples;
}

describe("queries, reasoning and parameters on /v1/embeddings", () => {
  test("input_type picks the query or the document prompt: the golden embeddings, under every accepted name", async () => {
    const s = await start();
    const input = [queries[0].input, queries[2].input];
    for (const inputType of ["query", "search_query"]) {
      const r = await post(s.url, "/v1/embeddings", { input, input_type: inputType });
      assert.equal(r.status, 200, inputType);
      assertEmbedding(r.body.data[0].embedding, queries[0].hidden_normalized, `${inputType} 0`);
      assertEmbedding(r.body.data[1].embedding, queries[2].hidden_normalized, `${inputType} 1`);
      const tokens = input.reduce((n, q) => n + r3.prepare(q, "query").ids.length, 0);
      assert.deepEqual(r.body.usage, { prompt_tokens: tokens, total_tokens: tokens });
    }
    for (const inputType of ["document", "search_document", "passage", null]) {
      const r = await post(s.url, "/v1/embeddings", { input: documents[1].input, input_type: inputType });
      assert.equal(r.status, 200, String(inputType));
      assertEmbedding(r.body.data[0].embedding, documents[1].hidden_normalized, `${inputType}`);
      assert.equal(r.body.data[0].truncated, false);
      assert.equal(r.body.data[0].reasoning, undefined);
    }
    // The openai client passes fields it does not know through.
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const params = { model: MODEL, input: queries[1].input, input_type: "query" } as OpenAI.EmbeddingCreateParams;
    const viaClient = await client.embeddings.create(params);
    assertEmbedding(viaClient.data[0].embedding, queries[1].hidden_normalized, "openai client, query");
  });

  test("reasoning: the model writes about each query first, up to max_new_tokens (the request's, else the server's)", async () => {
    const s = await start();
    const [thought] = await r3.generate([queries[0].input], { maxNewTokens: 5 });
    const [want] = await r3.encode([thought.text], { kind: "query" });
    const r = await post(s.url, "/v1/embeddings", { input: [queries[0].input], input_type: "query", reasoning: true, max_new_tokens: 5 });
    assert.equal(r.status, 200);
    const item = r.body.data[0];
    assertEmbedding(item.embedding, want, "reasoned query");
    assert.equal(item.reasoning, thought.reasoning);
    assert.equal(item.reasoning_tokens, 5, "the tiny model never writes <|embed_token|>: the cap ends it");
    assert.equal(item.emitted_embed_token, false);
    assert.equal(item.stop_reason, "length");
    assert.equal(item.truncated, false);
    const prompt = thought.generation.prefillTokens;
    assert.deepEqual(r.body.usage, { prompt_tokens: prompt, completion_tokens: 5, total_tokens: prompt + 5 });

    const byDefault = await start({ maxNewTokens: 3 });
    const d = await post(byDefault.url, "/v1/embeddings", { input: [queries[0].input, queries[1].input], input_type: "query", reasoning: true });
    assert.deepEqual(d.body.data.map((e: any) => e.reasoning_tokens), [3, 3]);
    assert.equal(d.body.usage.completion_tokens, 6);

    // With --truncate, a query too long for max_length is cut as SearchR3 cuts it, and said so.
    const short = await start({ truncate: true, maxLength: 64 });
    const long = "which list method reverses the items in place ".repeat(20);
    const cutter = new SearchR3(engine, { maxLength: 64, onWarning: () => {} });
    const [cutThought] = await cutter.generate([long], { maxNewTokens: 3 });
    const [cutWant] = await cutter.encode([cutThought.text], { kind: "query" });
    const t = await post(short.url, "/v1/embeddings", { input: long, input_type: "query", reasoning: true, max_new_tokens: 3 });
    assert.equal(t.status, 200);
    assert.equal(t.body.data[0].truncated, true);
    assert.equal(t.body.data[0].reasoning_tokens, cutThought.generation.ids.length);
    assertEmbedding(t.body.data[0].embedding, cutWant, "a cut reasoned query");
    assertError(await post(s.url, "/v1/embeddings", { input: "word ".repeat(1500), input_type: "query", reasoning: true }),
      400, "input", "context_length_exceeded", "a reasoned query over max_length, without --truncate");
  });

  test("a client that leaves mid-reasoning stops it at the next token", async () => {
    const s = await start();
    const cancel = new AbortController();
    const gone = post(s.url, "/v1/embeddings", { input: queries[0].input, input_type: "query", reasoning: true, max_new_tokens: 900 },
      {}, cancel.signal).catch((e) => e);
    await until("the reasoning to run", async () => (await get(s.url, "/health")).body.queue.running === 1);
    await new Promise((r) => setTimeout(r, 300));
    cancel.abort();
    assert.equal((await gone).name, "AbortError");
    const t0 = Date.now();
    await until("the reasoning to stop", async () => (await get(s.url, "/health")).body.queue.running === 0);
    const position = engine.model.position;
    assert.ok(Date.now() - t0 < 3000, `stopped ${Date.now() - t0} ms after the disconnect`);
    assert.ok(position < 300, `the KV cache holds ${position} tokens, not a finished 900-token reasoning`);
  });

  test("OpenAI parameters this server does not implement are refused by name; their no-op values pass", async () => {
    const s = await start();
    const chat = (extra: object) => post(s.url, "/v1/chat/completions",
      { messages: [{ role: "user", content: "Hi" }], max_tokens: 2, ...extra });
    const several = await chat({ tools: [], logprobs: true, top_k: 5, seed: 1 });
    assertError(several, 400, "logprobs", "unsupported_parameter", "several");
    assert.match(several.body.error.message, /'logprobs', 'top_k'/);
    assert.doesNotMatch(several.body.error.message, /'tools'|'seed'/);
    const noOps = await chat({
      frequency_penalty: 0, presence_penalty: 0, logprobs: false, logit_bias: {}, tools: [], tool_choice: "none",
      response_format: { type: "text" }, store: false, user: "someone", top_logprobs: null,
    });
    assert.equal(noOps.status, 200, JSON.stringify(noOps.body));
    assert.equal((await post(s.url, "/v1/embeddings", { input: "a", user: "someone", dimensions: null })).status, 200);
  });
});

describe("operations: request log, /metrics, HEAD, the exposed-host warning", () => {
  test("one log line per request (method, path, status, tokens, time); quiet leaves them out", async () => {
    const { s, lines } = await logged();
    const e = await post(s.url, "/v1/embeddings", { input: documents[0].input });
    const c = await post(s.url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0 });
    await post(s.url, "/v1/nowhere?secret=1", {});
    await get(s.url, "/health");
    await until("four lines", async () => lines.length === 4);
    const format = /^r3gpu serve: (\S+) (\S+) (\d{3}) (\d+) tokens (\d+\.\d) ms$/;
    const parsed = lines.map((l) => { const m = format.exec(l); assert.ok(m, `log line: ${l}`); return m.slice(1, 5); });
    assert.deepEqual(parsed, [
      ["POST", "/v1/embeddings", "200", String(e.body.usage.total_tokens)],
      ["POST", "/v1/chat/completions", "200", String(c.body.usage.total_tokens)],
      ["POST", "/v1/nowhere", "404", "0"],
      ["GET", "/health", "200", "0"],
    ]);

    const quiet = await logged({ quiet: true });
    await post(quiet.s.url, "/v1/embeddings", { input: "a" });
    await get(quiet.s.url, "/health");
    assert.deepEqual(quiet.lines, []);
  });

  test("GET /metrics: requests, tokens, queue and latency histograms in the Prometheus text format", async () => {
    const s = await start();
    const e = await post(s.url, "/v1/embeddings", { input: documents[0].input });
    const c = await post(s.url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0 });
    await post(s.url, "/v1/nowhere", {});
    await get(s.url, "/health");
    await get(s.url, "/v1/models/gpt-4");
    const res = await fetch(`${s.url}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const m = parseMetrics(await res.text());
    const at = (key: string) => {
      assert.ok(m.has(key), `${key} in ${[...m.keys()].join(" ")}`);
      return m.get(key);
    };
    assert.equal(at('r3gpu_requests_total{method="POST",route="/v1/embeddings",status="200"}'), 1);
    assert.equal(at('r3gpu_requests_total{method="POST",route="/v1/chat/completions",status="200"}'), 1);
    assert.equal(at('r3gpu_requests_total{method="POST",route="unmatched",status="404"}'), 1);
    assert.equal(at('r3gpu_requests_total{method="GET",route="/health",status="200"}'), 1);
    assert.equal(at('r3gpu_requests_total{method="GET",route="unmatched",status="404"}'), 1, "an unknown model id is no label");
    assert.equal(at('r3gpu_tokens_total{kind="prompt",route="/v1/embeddings"}'), e.body.usage.prompt_tokens);
    assert.equal(at('r3gpu_tokens_total{kind="prompt",route="/v1/chat/completions"}'), c.body.usage.prompt_tokens);
    assert.equal(at('r3gpu_tokens_total{kind="completion",route="/v1/chat/completions"}'), 3);
    assert.equal(at("r3gpu_queue_running{}"), 0);
    assert.equal(at("r3gpu_queue_waiting{}"), 0);
    assert.equal(at("r3gpu_queue_max_waiting{}"), 64);
    assert.equal(at("r3gpu_queue_wait_seconds_count{}"), 2, "two GPU jobs");
    for (const [route, n] of [["/v1/embeddings", 1], ["/health", 1], ["unmatched", 2]] as const) {
      const buckets = [...m].filter(([k]) => k.startsWith("r3gpu_request_duration_seconds_bucket{") && k.includes(`route="${route}"`));
      assert.ok(buckets.length > 5, `${route}: buckets`);
      const counts = buckets.map(([, v]) => v);
      assert.ok(counts.every((v, i) => i === 0 || v >= counts[i - 1]), `${route}: cumulative buckets`);
      assert.equal(at(`r3gpu_request_duration_seconds_bucket{le="+Inf",route="${route}"}`), n);
      assert.equal(at(`r3gpu_request_duration_seconds_count{route="${route}"}`), n);
      assert.ok(at(`r3gpu_request_duration_seconds_sum{route="${route}"}`)! > 0);
    }
  });

  test("HEAD answers as GET without a body", async () => {
    const s = await start();
    const h = await head(s.url, "/health");
    assert.equal(h.status, 200);
    assert.equal(h.headers.get("content-type"), "application/json");
    assert.equal(h.text, "");
    assert.equal((await head(s.url, "/v1/models")).status, 200);
    assert.equal((await head(s.url, "/v1/embeddings")).status, 405);
  });

  test("a warning when listening beyond loopback without an API key", async () => {
    const warning = /warning: listening on 0\.0\.0\.0 without an API key/;
    const open = await logged({ host: "0.0.0.0", quiet: true });
    assert.equal(open.lines.filter((l) => warning.test(l)).length, 1, open.lines.join("\n"));
    const keyed = await logged({ host: "0.0.0.0", apiKey: "k" });
    const local = await logged();
    assert.deepEqual([...keyed.lines, ...local.lines].filter((l) => /warning/.test(l)), []);
  });
});

describe("hostile input", () => {
  // A shared machine's scheduler (and the garbage collector, with 4 MiB strings about) can stall any thread for a
  // moment; what matters is that /health is not held for the seconds or minutes that tokenizing would take.
  test("a 4 MiB one-word body is refused at once, and /health answers meanwhile", async () => {
    const s = await start();
    assert.equal((await post(s.url, "/v1/embeddings", { input: "warm up" })).status, 200, "the tokenizer thread is ready");
    const limit = 4 << 20;
    /** The body with its one text grown to fill `limit` bytes. */
    const fill = (make: (text: string) => object) => JSON.stringify(make("a".repeat(limit - JSON.stringify(make("")).length)));
    for (const [path, body, param] of [
      ["/v1/embeddings", fill((text) => ({ input: text })), "input"],
      ["/v1/chat/completions", fill((text) => ({ messages: [{ role: "user", content: text }] })), "messages"],
    ]) {
      assert.equal(Buffer.byteLength(body), limit, "exactly the default body limit");
      const worst: number[] = [];
      // Up to three tries, for one without a stall from elsewhere; before the thread and the byte bound, each
      // held /health for minutes.
      for (let attempt = 0; attempt < 3; attempt++) {
        const t0 = performance.now();
        const reply = post(s.url, path, body);
        const health = await healthDuring(s.url, reply);
        const ms = performance.now() - t0;
        const r = await reply;
        assertError(r, 400, param, "context_length_exceeded", path);
        assert.match(r.body.error.message, /tokens of at most 128 bytes each \((131072|524288) bytes\)/, "names the limit");
        assert.ok(ms < 1500, `${path}: answered in ${ms.toFixed(0)} ms`);
        worst.push(health.worst);
        if (health.worst < 100) break;
      }
      assert.ok(worst.at(-1)! < 100, `${path}: /health took up to ${worst.map((ms) => ms.toFixed(0)).join(", ")} ms in ${worst.length} tries`);
    }
  });

  test("a long input within the byte bound is tokenized off the event loop: /health keeps answering", async () => {
    const s = await start();
    // 100 KB of words: seconds of tokenizing, and some 20,000 tokens, over max_length 1024 (one word of that length is
    // refused at once, before tokenizing: see the tokenizer's bound on unsplit runs).
    const word = "word ".repeat(20_000);
    const tokens = r3.prepare(word).truncation!.tokens;
    const reply = post(s.url, "/v1/embeddings", { input: word });
    const health = await healthDuring(s.url, reply);
    const r = await reply;
    assertError(r, 400, "input", "context_length_exceeded", "100 KB word");
    assert.ok(r.body.error.message.includes(`is ${tokens} tokens with the document prompt`), r.body.error.message);
    assert.ok(health.answers >= 20, `/health answered ${health.answers} times meanwhile`);
    const slow = health.latencies.filter((ms) => ms >= 100).length;
    assert.ok(slow <= health.answers / 20, `/health took 100 ms or more ${slow} times of ${health.answers}`);
  });
});

const scratch = await mkdtemp(join(tmpdir(), "r3gpu-serve-"));
after(() => rm(scratch, { recursive: true, force: true }));
// A short max_length keeps the reasoning (generated up to it) quick on the tiny model.
const r3small = new SearchR3(engine, { maxLength: 96, onWarning: () => {} });
let built: Promise<{ db: string; index: SearchIndex }> | undefined;

/** A LanceDB index of the golden documents and two more, built once. */
function searchIndex() {
  built ??= (async () => {
    const corpus = join(scratch, "corpus.jsonl");
    const docs = [...documents.map((d) => d.input), "Rust's borrow checker enforces ownership at compile time.",
      "A haiku has three lines of five, seven and five syllables."];
    await writeFile(corpus, docs.map((text, i) => JSON.stringify({ id: `d${i}`, text })).join("\n"));
    const db = join(scratch, "db");
    const settings = indexSettings(r3small, await modelIdentity(nodeModelDir(tinyDir)), { chunkTokens: 40, chunkOverlap: 5 });
    const index = await SearchIndex.open(db, { create: settings });
    await indexCorpus(r3small, index, corpus);
    return { db, index };
  })();
  return built;
}

describe("/search with a database", () => {
  test("answers as the index and SearchR3 do directly, with reasoning (the default) and without", async () => {
    const { db, index } = await searchIndex();
    const s = await start({ search: await (await openDatabase(db)).backend(engine, nodeModelDir(tinyDir)) });

    const query = "how do I reverse a list?";
    const direct = await index.search(await r3small.encodeQuery(query), 3);
    const r = await post(s.url, "/search", { query, k: 3, reasoning: false });
    assert.equal(r.status, 200);
    assert.equal(r.body.query, query);
    assert.equal(r.body.reasoning, undefined);
    assert.deepEqual(r.body.results.map((h: any) => h.id), direct.map((h) => h.id));
    r.body.results.forEach((h: any, i: number) => {
      assert.ok(Math.abs(h.score - direct[i].score) < 1e-5, `score ${i}`);
      assert.equal(h.text, direct[i].text);
    });

    const [thought] = await r3small.generate([query]);
    const [vector] = await r3small.encode([thought.text], { kind: "query" });
    const reasoned = await index.search(vector, 2);
    const rr = await post(s.url, "/search", { query, k: 2 });
    assert.equal(rr.status, 200);
    assert.equal(rr.body.reasoning, thought.reasoning);
    assert.deepEqual(rr.body.results.map((h: any) => h.id), reasoned.map((h) => h.id));

    assertError(await post(s.url, "/search", { k: 3 }), 400, "query", "missing_required_parameter", "no query");
    assertError(await post(s.url, "/search", { query: " " }), 400, "query", "empty_input", "blank query");
    assertError(await post(s.url, "/search", { query, k: 0 }), 400, "k", "invalid_value", "k = 0");
    assertError(await post(s.url, "/search", { query, reasoning: "yes" }), 400, "reasoning", "invalid_type", "reasoning");
  });

  test("says how the reasoning ended and what it cost; max_new_tokens (the request's, else the server's) caps it", async () => {
    const { db, index } = await searchIndex();
    const backend = await (await openDatabase(db)).backend(engine, nodeModelDir(tinyDir));
    const s = await start({ search: backend });
    const query = "how do I reverse a list?";

    const direct = await post(s.url, "/search", { query, k: 3, reasoning: false });
    assert.equal(direct.body.truncated, false);
    assert.equal(direct.body.emitted_embed_token, undefined, "no reasoning, nothing to say about it");
    const promptTokens = r3small.prepare(query, "query").ids.length;
    assert.deepEqual(direct.body.usage, { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens });

    // The tiny model never writes <|embed_token|>, so the cap alone ends its reasoning.
    const [thought] = await r3small.generate([query], { maxNewTokens: 5 });
    const want = await index.search((await r3small.encode([thought.text], { kind: "query" }))[0], 2);
    const capped = await post(s.url, "/search", { query, k: 2, max_new_tokens: 5 });
    assert.equal(capped.status, 200);
    assert.equal(capped.body.reasoning, thought.reasoning);
    assert.equal(capped.body.emitted_embed_token, false);
    assert.equal(capped.body.stop_reason, "length");
    assert.equal(capped.body.truncated, false);
    assert.deepEqual(capped.body.usage, { prompt_tokens: thought.generation.prefillTokens, completion_tokens: 5, total_tokens: thought.generation.prefillTokens + 5 });
    assert.deepEqual(capped.body.results.map((h: any) => h.id), want.map((h) => h.id));

    const byDefault = await start({ search: backend, maxNewTokens: 3 });
    const three = await post(byDefault.url, "/search", { query, k: 2 });
    assert.equal(three.body.usage.completion_tokens, 3);
    assert.equal(three.body.stop_reason, "length");
    assert.equal((await post(byDefault.url, "/search", { query, k: 2, max_new_tokens: 6 })).body.usage.completion_tokens, 6);

    // Longer than the index's max_length (96): cut, and said so; without reasoning, as SearchR3 cuts it.
    const long = "reverse the list in place and then print it ".repeat(30);
    const cut = await post(s.url, "/search", { query: long, k: 3, reasoning: false });
    assert.equal(cut.status, 200);
    assert.equal(cut.body.truncated, true);
    const cutDirect = await index.search(await r3small.encodeQuery(long), 3);
    assert.deepEqual(cut.body.results.map((h: any) => h.id), cutDirect.map((h) => h.id));
    assert.equal((await post(s.url, "/search", { query: long, k: 1, max_new_tokens: 2 })).body.truncated, true);

    assertError(await post(s.url, "/search", { query, reasoning: false, max_new_tokens: 5 }), 400, "max_new_tokens", "unsupported_value", "cap without reasoning");
    assertError(await post(s.url, "/search", { query, max_new_tokens: 0 }), 400, "max_new_tokens", "invalid_value", "cap 0");
    assertError(await post(s.url, "/search", { query, top_k: 5 }), 400, "top_k", "unsupported_parameter", "unknown parameter");
  });

  test("a client that leaves mid-reasoning stops it at the next token, and the next request starts at once", async () => {
    // An index with room for a long reasoning: max_length 2048, and the cap at 1900 tokens (half a minute here).
    const r3long = new SearchR3(engine, { maxLength: 2048, onWarning: () => {} });
    const corpus = join(scratch, "one.jsonl");
    await writeFile(corpus, JSON.stringify({ id: "d0", text: documents[0].input }));
    const db = join(scratch, "db-long");
    const index = await SearchIndex.open(db, { create: indexSettings(r3long, await modelIdentity(nodeModelDir(tinyDir)), { chunkTokens: 40, chunkOverlap: 5 }) });
    await indexCorpus(r3long, index, corpus);
    const { s, lines } = await logged({ search: await (await openDatabase(db)).backend(engine, nodeModelDir(tinyDir)) });
    const body = { query: "tell me everything about lists", max_new_tokens: 1900 };

    const cancel = new AbortController();
    const gone = post(s.url, "/search", body, {}, cancel.signal).catch((e) => e);
    await until("the search to run", async () => (await get(s.url, "/health")).body.queue.running === 1);
    await new Promise((r) => setTimeout(r, 300));
    cancel.abort();
    assert.equal((await gone).name, "AbortError");
    const t0 = Date.now();
    await until("the reasoning to stop", async () => (await get(s.url, "/health")).body.queue.running === 0);
    const position = engine.model.position;
    assert.ok(Date.now() - t0 < 3000, `stopped ${Date.now() - t0} ms after the disconnect`);
    assert.ok(position < 300, `the KV cache holds ${position} tokens, not a finished 1900-token reasoning`);
    await until("the log line", async () => lines.some((l) => /^r3gpu serve: POST \/search 499 /.test(l)));

    // Again with a request waiting behind it: that one starts as soon as the reasoning stops.
    const again = new AbortController();
    const gone2 = post(s.url, "/search", body, {}, again.signal).catch((e) => e);
    await until("the search to run", async () => (await get(s.url, "/health")).body.queue.running === 1);
    const queued = post(s.url, "/v1/embeddings", { input: documents[0].input });
    await until("the embedding to wait", async () => (await get(s.url, "/health")).body.queue.waiting === 1);
    again.abort();
    await gone2;
    const t1 = Date.now();
    const next = await queued;
    assert.ok(Date.now() - t1 < 3000, `the queued request was answered ${Date.now() - t1} ms after the disconnect`);
    assertEmbedding(next.body.data[0].embedding, documents[0].hidden_normalized, "the request after");
  });
});

describe("README server examples", () => {
  test("each curl and openai-client example runs against a live server", async () => {
    const s = await start({ search: await (await openDatabase((await searchIndex()).db)).backend(engine, nodeModelDir(tinyDir)) });
    const doc = await readFile(join(repoRoot, "README.md"), "utf8");
    const examples = [...doc.matchAll(/^```(sh|js) server-example\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1], code: m[2] }));
    assert.deepEqual(examples.map((e) => e.lang), ["sh", "sh", "sh", "js"]);
    const { R3GPU_API_KEY: _, ...withoutKey } = process.env;
    for (const { lang, code } of examples) {
      const live = code.replaceAll("http://127.0.0.1:8080", s.url);
      const { stdout } = lang === "sh"
        ? await run("bash", ["-eo", "pipefail", "-c", live])
        : await run(process.execPath, ["--input-type=module", "-e", live], { cwd: repoRoot, env: withoutKey });
      assert.ok(stdout.trim().length > 0, `${lang} example prints something`);
      assert.doesNotMatch(stdout, /"error"/, `${lang} example: ${stdout.slice(0, 300)}`);
      if (code.includes("/v1/embeddings")) assert.equal(JSON.parse(stdout).data.length, 2);
      if (code.includes("/search")) assert.equal(JSON.parse(stdout).results.length, 3);
      if (code.includes('"stream": true')) assert.match(stdout, /data: \[DONE\]\n*$/);
      if (lang === "js") assert.match(stdout, /^\[ 64, 64 \]/);
    }
  });
});

/** The URL a spawned `r3gpu serve` prints once it listens. */
function listening(child: ChildProcess, exited: Promise<unknown>, stderr: () => string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    exited.then(() => reject(new Error(`the server exited early: ${stderr()}`)));
  });
}

describe("r3gpu serve (the command)", () => {
  const bin = join(repoRoot, "bin", "r3gpu.js");

  test("a bad flag is a usage error (exit 2) before anything loads", async () => {
    const r = await run(process.execPath, [bin, "serve", tinyDir, "--port", "http"]).catch((e) => e);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--port must be an integer/);
    const cap = await run(process.execPath, [bin, "serve", tinyDir, "--max-new-tokens", "0"]).catch((e) => e);
    assert.equal(cap.code, 2);
    assert.match(cap.stderr, /--max-new-tokens must be an integer from 1/);
  });

  test("--max-new-tokens caps /search's reasoning; --quiet leaves out the request lines", async () => {
    const { db } = await searchIndex();
    const child = spawn(process.execPath, [bin, "serve", tinyDir, "--port", "0", "--db", db, "--quiet", "--max-new-tokens", "4"],
      { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d) => { stderr += d; });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const url = await listening(child, exited, () => stderr);
      const found = await post(url, "/search", { query: "reverse a list", k: 1 });
      assert.equal(found.status, 200);
      assert.equal(found.body.usage.completion_tokens, 4);
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
      assert.match(stderr, /stopped/);
      assert.doesNotMatch(stderr, /POST \/search/);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("--db without an index there fails before the model loads", async () => {
    const r = await run(process.execPath, [bin, "serve", tinyDir, "--db", "/nonexistent/r3gpu-db"]).catch((e) => e);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no index there/);
  });

  test("serves /search from --db; on SIGTERM stops accepting, finishes the requests in flight, exits 0", async () => {
    const { db } = await searchIndex();
    const child = spawn(process.execPath, [bin, "serve", tinyDir, "--port", "0", "--db", db], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d) => { stderr += d; });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const url = await listening(child, exited, () => stderr);

      const found = await post(url, "/search", { query: "reverse a list", k: 3, reasoning: false });
      assert.equal(found.status, 200);
      assert.equal(found.body.results.length, 3);

      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 150, temperature: 0, stream: true }),
      });
      const stream = events(res)[Symbol.asyncIterator]();
      const first = await stream.next();
      const plain = post(url, "/v1/chat/completions", { messages: [{ role: "user", content: "Hello" }], max_tokens: 20, temperature: 0 });
      // The default --batch-size decodes the two chats together.
      await until("both chats to run", async () => (await get(url, "/health")).body.queue.running === 2);
      child.kill("SIGTERM");
      await until("the signal to be handled", async () => stderr.includes("SIGTERM"));
      const refused = await new Promise<string | undefined>((resolve) => {
        httpRequest(`${url}/health`, { agent: false }, () => resolve(undefined)).on("error", (e: NodeJS.ErrnoException) => resolve(e.code)).end();
      });
      assert.equal(refused, "ECONNREFUSED", "a new connection is refused while requests are in flight");

      const got = await readStream({ [Symbol.asyncIterator]: () => stream });
      const want = await expectedChat("Hi", { maxNewTokens: 150, doSample: false });
      assert.equal(JSON.parse(first.value!).choices[0].delta.content + got.text, want.text);
      assert.ok(got.done, "the stream ends with [DONE]");
      const p = await plain;
      assert.equal(p.status, 200);
      assert.equal(p.body.choices[0].message.content, (await expectedChat("Hello", { maxNewTokens: 20, doSample: false })).text);
      assert.equal(await exited, 0);
      assert.match(stderr, /SIGTERM: accepting no more requests; finishing 2 in flight/);
      assert.match(stderr, /^r3gpu serve: POST \/search 200 \d+ tokens \d+\.\d ms$/m, "a line per request");
      assert.match(stderr, /stopped/);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
