// Tokenizing off the event loop. The tokenizer is pure JS and slow on long words (a 100 KB word takes seconds), so
// the server tokenizes in a worker thread, one request at a time, and keeps answering other clients meanwhile.
// Before anything reaches the thread, a byte bound refuses (or cuts) text that cannot fit in the tokens allowed:
// see `tokenizerBytes`.
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { TextKind, Truncation } from "../search/searchr3.ts";
import { JobAbortedError } from "./queue.ts";

export interface WorkerData {
  modelDir: string;
  vocabSize: number;
  maxSeqLen: number;
}

export type ThreadRequest =
  | { op: "encode"; text: string }
  | { op: "prepare"; texts: string[]; kind: TextKind; maxLength: number }
  | { op: "head"; text: string; maxTokens: number };

export type ThreadReply = { ready: number } | { failed: string } | { result: unknown } | { error: string };

/** SearchR3.prepare's ids and truncation for one text. */
export interface PreparedIds {
  ids: number[];
  truncation?: Truncation;
}

interface Call {
  request: ThreadRequest;
  signal: AbortSignal;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

// The worker sits next to this module, compiled or not.
const WORKER = fileURLToPath(new URL(`./tokenizer-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url));

export class TokenizerThread {
  /**
   * The most UTF-8 bytes one token stands for (128 for Qwen2.5: a run of spaces). Resolves once the thread has
   * loaded the tokenizer; rejects if it could not.
   */
  readonly maxTokenBytes: Promise<number>;
  private readonly worker: Worker;
  private readonly waiting: Call[] = [];
  private running: Call | undefined;
  private failure: Error | undefined;

  /** `model`: the loaded model's vocabulary size and KV cache, which SearchR3's checks of its options read. */
  constructor(modelDir: string, model: { vocabSize: number; maxSeqLen: number }) {
    this.worker = new Worker(WORKER, { workerData: { modelDir, ...model } satisfies WorkerData });
    let ready!: (bytes: number) => void;
    let failed!: (err: Error) => void;
    this.maxTokenBytes = new Promise((resolve, reject) => { ready = resolve; failed = reject; });
    // A server that never tokenizes must not report an unhandled rejection for a thread that failed to load.
    this.maxTokenBytes.catch(() => {});
    const stop = (err: Error) => {
      this.failure ??= err;
      failed(err);
      for (const call of [this.running, ...this.waiting.splice(0)]) call?.reject(this.failure);
      this.running = undefined;
    };
    this.worker.on("message", (reply: ThreadReply) => {
      if ("ready" in reply) return ready(reply.ready);
      if ("failed" in reply) return stop(new Error(`the tokenizer thread could not load ${modelDir}: ${reply.failed}`));
      const call = this.running!;
      this.running = undefined;
      if ("error" in reply) call.reject(new Error(reply.error));
      else call.resolve(reply.result);
      this.next();
    });
    this.worker.on("error", (e) => stop(new Error(`the tokenizer thread failed: ${e.message}`)));
    this.worker.on("exit", (code) => stop(new Error(`the tokenizer thread exited (code ${code})`)));
  }

  /** Token ids of a text, as TextTokenizer.encode gives them. */
  encode(text: string, signal: AbortSignal): Promise<number[]> {
    return this.call({ op: "encode", text }, signal) as Promise<number[]>;
  }

  /** What SearchR3.prepare gives for each text with its default prompts and this maxLength. */
  prepare(texts: string[], kind: TextKind, maxLength: number, signal: AbortSignal): Promise<PreparedIds[]> {
    return this.call({ op: "prepare", texts, kind, maxLength }, signal) as Promise<PreparedIds[]>;
  }

  /** The text of a text's first maxTokens tokens (the text itself if it has no more), and its token count. */
  head(text: string, maxTokens: number, signal: AbortSignal): Promise<{ text: string; tokens: number }> {
    return this.call({ op: "head", text, maxTokens }, signal) as Promise<{ text: string; tokens: number }>;
  }

  async close(): Promise<void> {
    this.failure ??= new Error("the tokenizer thread was closed");
    await this.worker.terminate();
  }

  /** Requests go one at a time, so that one whose client left before its turn is dropped, not tokenized. */
  private call(request: ThreadRequest, signal: AbortSignal): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ request, signal, resolve, reject });
      if (!this.running) this.next();
    });
  }

  private next(): void {
    let call: Call | undefined;
    while ((call = this.waiting.shift()) && call.signal.aborted) call.reject(new JobAbortedError());
    if (!call) return;
    this.running = call;
    this.worker.postMessage(call.request);
  }
}

/**
 * The UTF-8 size of a text as the tokenizer sees it (NFC-normalized, as Qwen2's tokenizers normalize). Every token
 * stands for at most maxTokenBytes of those bytes, so a text of more than maxTokens x maxTokenBytes bytes has more
 * than maxTokens tokens, whatever it holds: that is refused (or cut) at once, without tokenizing. Bytes, not
 * characters: a byte-level token may hold part of a character (an emoji can take several tokens), so a character
 * count bounds nothing. The bound is loose for ordinary text (about 4 bytes a token), which is the point: it turns
 * away only what certainly cannot fit.
 */
export function tokenizerBytes(text: string): number {
  return Buffer.byteLength(nfc(text));
}

/** The longest start of a text (NFC-normalized) within `limit` UTF-8 bytes, cut between characters. */
export function cutToBytes(text: string, limit: number): string {
  const normalized = nfc(text);
  return normalized.slice(0, new TextEncoder().encodeInto(normalized, new Uint8Array(limit)).read);
}

function nfc(text: string): string {
  // ASCII (one byte per UTF-16 unit) is NFC already; normalizing 4 MiB of it would hold the event loop ~40 ms.
  return Buffer.byteLength(text) === text.length ? text : text.normalize("NFC");
}
