// Text generation on a loaded Qwen2 model: greedy decoding (argmax on the GPU, one id read back per token) or
// sampling (logits read back, sampled on the host), with stop ids, stop strings and a token limit; one prompt or
// many, batched on the GPU by the model's Scheduler.
import type { Qwen2Model } from "../model/qwen2.ts";
import { ChatTemplate, type ChatMessage, type ChatOptions } from "./chat.ts";
import type { SamplingParams } from "./sampling.ts";
import { Scheduler, type GenerationHandle } from "./scheduler.ts";
import { GenerationSequence } from "./sequence.ts";
import type { TextTokenizer } from "./tokenizer.ts";

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

export async function generate(
  model: Qwen2Model, tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions = {},
): Promise<GenerateResult> {
  return submit(model, tokenizer, prompt, opts).result;
}

/**
 * Generation as it happens: yields text chunks (never half a character, never text that a stop string might still
 * claim) and returns the result. The chunks join to the result's text. `for await` drops the return value; to get
 * it, call `next()` until `done`. Generations on one model run together (see Scheduler), as many at once as it has
 * KV-cache slots (LoadOptions.maxBatch); the others wait for a slot.
 */
export async function* generateStream(
  model: Qwen2Model, tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions = {},
): AsyncGenerator<string, GenerateResult, undefined> {
  const handle = submit(model, tokenizer, prompt, opts);
  let finished = false;
  try {
    for await (const chunk of handle.chunks) yield chunk;
    finished = true;
    return await handle.result;
  } finally {
    // A reader that stops early (return(), a break out of for await) leaves the batch rather than run on unread.
    if (!finished) handle.cancel();
  }
}

/** Many generations at once, batched on the GPU; results in the order of the prompts. */
export async function generateBatch(
  model: Qwen2Model, tokenizer: TextTokenizer, prompts: readonly Prompt[], opts: GenerateOptions | readonly GenerateOptions[] = {},
): Promise<GenerateResult[]> {
  return Promise.all(prompts.map((p, i) => submit(model, tokenizer, p, Array.isArray(opts) ? opts[i] : opts).result));
}

/** A chunk of the text of prompt `index`. */
export interface BatchChunk {
  index: number;
  text: string;
}

/**
 * Many generations at once, streamed: yields each prompt's chunks as they come (interleaved, tagged with the
 * prompt's index) and returns the results in the order of the prompts.
 */
export async function* generateBatchStream(
  model: Qwen2Model, tokenizer: TextTokenizer, prompts: readonly Prompt[], opts: GenerateOptions | readonly GenerateOptions[] = {},
): AsyncGenerator<BatchChunk, GenerateResult[], undefined> {
  const handles = prompts.map((p, i) => submit(model, tokenizer, p, Array.isArray(opts) ? opts[i] : opts));
  const readers = handles.map((h) => h.chunks[Symbol.asyncIterator]());
  const next = (index: number) => readers[index].next().then((r) => ({ index, r }));
  const inFlight = new Map(readers.map((_, i) => [i, next(i)]));
  try {
    while (inFlight.size > 0) {
      const { index, r } = await Promise.race(inFlight.values());
      if (r.done) inFlight.delete(index);
      else {
        inFlight.set(index, next(index));
        yield { index, text: r.value };
      }
    }
    return await Promise.all(handles.map((h) => h.result));
  } finally {
    // Those still running when the reader stops early leave the batch (a no-op for the finished).
    for (const index of inFlight.keys()) handles[index].cancel();
  }
}

function submit(model: Qwen2Model, tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions): GenerationHandle {
  const seq = new GenerationSequence(promptToIds(tokenizer, prompt, opts), tokenizer, model.config.eosTokenIds, model.maxSeqLen, opts);
  return Scheduler.of(model).submit(seq);
}

function promptToIds(tokenizer: TextTokenizer, prompt: Prompt, opts: GenerateOptions): number[] {
  if (typeof prompt === "string") return tokenizer.encode(prompt);
  if ("ids" in prompt) return [...prompt.ids];
  const template = opts.chatTemplate ?? ChatTemplate.fromTokenizer(tokenizer);
  return tokenizer.encode(template.render(prompt, { addGenerationPrompt: true, ...opts.chat }));
}
