// Text generation on a loaded Qwen2 model: greedy decoding (argmax on the GPU, one id read back per token) or
// sampling (logits read back, sampled on the host), with stop ids, stop strings and a token limit.
import type { Qwen2Model } from "../model/qwen2.ts";
import { mulberry32 } from "../util/prng.ts";
import { ChatTemplate, type ChatMessage, type ChatOptions } from "./chat.ts";
import { applyRepetitionPenalty, argmax, drawToken, samplingDistribution, type SamplingParams } from "./sampling.ts";
import { StopStringScanner } from "./stop-strings.ts";
import { StreamDecoder, type TextTokenizer } from "./tokenizer.ts";

/** Raw text (tokenized as is), a conversation (rendered with the chat template), or token ids. */
export type Prompt = string | readonly ChatMessage[] | { ids: readonly number[] };

export interface GenerateOptions extends SamplingParams {
  /** Default 256. */
  maxNewTokens?: number;
  /**
   * Sample from the distribution instead of taking the argmax. Default false; as in HF, temperature, topK and
   * topP only apply when sampling.
   */
  doSample?: boolean;
  /** HF's repetition_penalty: > 1 makes every token already in the prompt or output less likely. Default 1. */
  repetitionPenalty?: number;
  /** Seed of the sampling PRNG; the same seed, prompt and options give the same tokens. Default: random. */
  seed?: number;
  /** End-of-sequence ids. Default: the model's (config.json and generation_config.json); [] never stops on EOS. */
  eosTokenIds?: readonly number[];
  /** Further ids that end generation. */
  stopIds?: readonly number[];
  /** Generation ends once the text contains one of these; the text is cut before it. */
  stopStrings?: readonly string[];
  /** Leave special tokens out of the text. Default false. */
  skipSpecialTokens?: boolean;
  /** Template for a conversation prompt. Default: the tokenizer's. */
  chatTemplate?: ChatTemplate;
  /** How to render a conversation prompt; addGenerationPrompt defaults to true here. */
  chat?: ChatOptions;
  /** Ends generation before the next token once aborted (a client gone, Ctrl-C); the result so far is returned. */
  signal?: AbortSignal;
}

/**
 * Why generation ended: an EOS id, another stop id, a stop string, maxNewTokens, the model's KV cache (maxSeqLen)
 * being full, or the caller's abort signal.
 */
export type StopReason = "eos" | "stop-id" | "stop-string" | "length" | "context" | "aborted";

export interface GenerateResult {
  /** The generated text, without the text of a final stop id and cut before a stop string. */
  text: string;
  /** Generated ids, including the stop id when one ended generation (as HF does). */
  ids: number[];
  stopReason: StopReason;
  /** The id that ended generation ("eos" or "stop-id"). */
  stopId?: number;
  /** The stop string that ended generation. */
  stopString?: string;
  prefillTokens: number;
  /** Tokens that needed a decode step (the first new token comes from the prefill). */
  decodeTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  prefillTokPerS: number;
  decodeTokPerS: number;
  /** The seed used, when sampling (so that a run with a random seed can be repeated). */
  seed?: number;
}

const DEFAULT_MAX_NEW_TOKENS = 256;

export async function generate(
  model: Qwen2Model, tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions = {},
): Promise<GenerateResult> {
  const stream = generateStream(model, tokenizer, prompt, opts);
  for (;;) {
    const r = await stream.next();
    if (r.done) return r.value;
  }
}

/**
 * Generation as it happens: yields text chunks (never half a character, never text that a stop string might still
 * claim) and returns the result. The chunks join to the result's text. `for await` drops the return value; to get
 * it, call `next()` until `done`. The model holds one sequence, so only one generation may run on it at a time.
 */
export async function* generateStream(
  model: Qwen2Model, tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions = {},
): AsyncGenerator<string, GenerateResult, undefined> {
  const promptIds = promptToIds(tokenizer, prompt, opts);
  const maxNewTokens = opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const penalty = opts.repetitionPenalty ?? 1;
  const temperature = opts.temperature ?? 1;
  const sampling = (opts.doSample ?? false) && temperature > 0;
  const params = { temperature, topK: opts.topK ?? 50, topP: opts.topP ?? 1 };
  checkOptions(maxNewTokens, penalty, params);
  const seed = sampling ? (opts.seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0 : undefined;
  const random = mulberry32(seed ?? 0);
  // Logits leave the GPU only when the host must change or sample them; plain greedy uses the GPU's argmax.
  const hostLogits = sampling || penalty !== 1;
  const eos = new Set(opts.eosTokenIds ?? model.config.eosTokenIds);
  const stops = new Set(opts.stopIds ?? []);
  const seen = new Set(promptIds);
  const choose = (logits: Float32Array): number => {
    if (penalty !== 1) applyRepetitionPenalty(logits, seen, penalty);
    return sampling ? drawToken(samplingDistribution(logits, params), random()) : argmax(logits);
  };

  // A prefill of P tokens yields the first new token; each later one needs the previous one in the cache.
  const room = model.maxSeqLen - promptIds.length + 1;
  const limit = Math.min(maxNewTokens, room);
  const ids: number[] = [];
  const text = new StopStringScanner(opts.stopStrings ?? []);
  const decoder = new StreamDecoder(tokenizer, { skipSpecialTokens: opts.skipSpecialTokens });
  let stopReason: StopReason = limit === maxNewTokens ? "length" : "context";
  let stopId: number | undefined;
  let prefillSeconds = 0;
  let decodeSeconds = 0;

  model.reset();
  // Gated on maxNewTokens rather than limit so that a prompt longer than the KV cache makes the prefill throw.
  if (maxNewTokens > 0) {
    let t = performance.now();
    const first = await model.prefill(promptIds, { logits: hostLogits });
    let next = hostLogits ? choose(first.logits!) : first.next;
    prefillSeconds = (performance.now() - t) / 1000;
    for (;;) {
      ids.push(next);
      seen.add(next);
      if (eos.has(next) || stops.has(next)) {
        stopReason = eos.has(next) ? "eos" : "stop-id";
        stopId = next;
        break;
      }
      const chunk = text.push(decoder.push(next));
      if (chunk) yield chunk;
      if (text.stopString !== undefined) {
        stopReason = "stop-string";
        break;
      }
      if (ids.length >= limit) break;
      if (opts.signal?.aborted) {
        stopReason = "aborted";
        break;
      }
      t = performance.now();
      if (hostLogits) {
        next = choose((await model.stepWithLogits(next, true)).logits!);
      } else {
        next = await model.step();
      }
      decodeSeconds += (performance.now() - t) / 1000;
    }
  }
  if (text.stopString === undefined) {
    const chunk = text.push(decoder.flush()) + text.end();
    if (chunk) yield chunk;
    if (text.stopString !== undefined) stopReason = "stop-string";
  }

  const decodeTokens = Math.max(0, ids.length - 1);
  return {
    text: text.text,
    ids,
    stopReason,
    stopId,
    stopString: text.stopString,
    prefillTokens: maxNewTokens > 0 ? promptIds.length : 0,
    decodeTokens,
    prefillSeconds,
    decodeSeconds,
    prefillTokPerS: prefillSeconds > 0 ? promptIds.length / prefillSeconds : 0,
    decodeTokPerS: decodeSeconds > 0 ? decodeTokens / decodeSeconds : 0,
    seed,
  };
}

function promptToIds(tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions): number[] {
  if (typeof prompt === "string") return tokenizer.encode(prompt);
  if ("ids" in prompt) return [...prompt.ids];
  const template = opts.chatTemplate ?? ChatTemplate.fromTokenizer(tokenizer);
  return tokenizer.encode(template.render(prompt, { addGenerationPrompt: true, ...opts.chat }));
}

function checkOptions(maxNewTokens: number, penalty: number, p: Required<SamplingParams>): void {
  const fail = (msg: string): never => { throw new Error(`generate: ${msg}`); };
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) fail(`maxNewTokens must be an integer >= 0, got ${maxNewTokens}`);
  if (!(penalty > 0)) fail(`repetitionPenalty must be > 0, got ${penalty}`);
  if (!(p.temperature >= 0)) fail(`temperature must be >= 0, got ${p.temperature}`);
  if (!Number.isInteger(p.topK) || p.topK < 0) fail(`topK must be an integer >= 0, got ${p.topK}`);
  if (!(p.topP > 0 && p.topP <= 1)) fail(`topP must be in (0, 1], got ${p.topP}`);
}
