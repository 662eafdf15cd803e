// Text generation on a loaded Qwen2 model: greedy decoding (argmax on the GPU, one id read back per token) or
// sampling (logits read back, sampled on the host), with stop ids, stop strings and a token limit.
import { readJson, type ModelDir } from "../io/files.ts";
import { Qwen2Model, type LoadOptions } from "../model/qwen2.ts";
import { ChatTemplate, type ChatMessage, type ChatOptions } from "./chat.ts";
import { StreamDecoder, TextTokenizer } from "./tokenizer.ts";

/** Raw text (tokenized as is), a conversation (rendered with the chat template), or token ids. */
export type Prompt = string | readonly ChatMessage[] | { ids: readonly number[] };

export interface SamplingParams {
  /** Divides the logits before softmax. Default 1. With doSample, 0 means greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (and any tied with the k-th, as HF does); 0 turns it off. Default 50, as HF. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p. Default 1 (off). */
  topP?: number;
}

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
}

/**
 * Why generation ended: an EOS id, another stop id, a stop string, maxNewTokens, or the model's KV cache
 * (maxSeqLen) being full.
 */
export type StopReason = "eos" | "stop-id" | "stop-string" | "length" | "context";

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

/**
 * Accumulates the generated text, finds the first stop string in it, and releases only text that no stop string
 * can still claim: a tail that is the start of a stop string is held back until the next chunk settles it.
 */
class StopStringScanner {
  text = "";
  stopString: string | undefined;
  private emitted = 0;
  private readonly longest: number;

  constructor(private readonly stopStrings: readonly string[]) {
    this.longest = Math.max(0, ...stopStrings.map((s) => s.length));
  }

  /** Adds decoded text; returns what may be shown now. */
  push(chunk: string): string {
    if (!chunk) return "";
    // Earlier text held no stop string, so a match must end inside the new chunk.
    const from = Math.max(0, this.text.length - this.longest + 1);
    this.text += chunk;
    let at = -1;
    for (const s of this.stopStrings) {
      const i = s === "" ? -1 : this.text.indexOf(s, from);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.stopString = s;
      }
    }
    if (at >= 0) this.text = this.text.slice(0, at);
    const safe = at >= 0 ? this.text.length : this.text.length - this.heldBack();
    return this.release(safe);
  }

  /** The rest of the text, once no more is coming. */
  end(): string {
    return this.release(this.text.length);
  }

  private release(upTo: number): string {
    if (upTo <= this.emitted) return "";
    const out = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return out;
  }

  private heldBack(): number {
    let hold = 0;
    for (const s of this.stopStrings) {
      for (let n = Math.min(s.length - 1, this.text.length - this.emitted); n > hold; n--) {
        if (this.text.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return hold;
  }
}

// ---- Sampling math (pure functions; HF transformers' logits processors and warpers) ----

/**
 * HF's RepetitionPenaltyLogitsProcessor, in place: for each distinct token in `tokens`, a positive logit is divided
 * by `penalty` and a negative one multiplied by it, so that penalty > 1 always makes the token less likely.
 */
export function applyRepetitionPenalty(logits: Float32Array, tokens: Iterable<number>, penalty: number): void {
  for (const id of new Set(tokens)) {
    const v = logits[id];
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/** Index of the largest value; the lowest index on ties (as torch.argmax and the GPU kernel). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Tokens that can be drawn, most likely first, with their probabilities (summing to 1). */
export interface Distribution {
  ids: Uint32Array;
  probs: Float64Array;
}

/**
 * The distribution HF samples from: logits / temperature, then top-k (keeping ties with the k-th logit), then top-p
 * over the softmax of what is left (a token is kept while the probability of the tokens before it is below p; the
 * most likely is always kept), renormalized. Ties in probability are ordered by id.
 */
export function samplingDistribution(logits: ArrayLike<number>, params: SamplingParams = {}): Distribution {
  const temperature = params.temperature ?? 1;
  const topK = params.topK ?? 0;
  const topP = params.topP ?? 1;
  if (!(temperature > 0)) throw new Error(`samplingDistribution: temperature must be > 0, got ${temperature}`);

  const threshold = topK > 0 && topK < logits.length ? kthLargest(logits, topK) : -Infinity;
  let kept: number[] = [];
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    // NaN fails both tests, so it is never a candidate.
    if (v >= threshold && v > -Infinity) {
      kept.push(i);
      if (v > max) max = v;
    }
  }
  if (kept.length === 0) throw new Error("samplingDistribution: no finite logit to sample from");
  // Scaling by 1/temperature after subtracting the max is the same softmax, computed without overflow.
  const weight = (id: number) => Math.exp((logits[id] - max) / temperature);
  let total = 0;
  for (const id of kept) total += weight(id);

  if (topP < 1) {
    // The top-p set is a most-likely-first prefix, so once the tokens at or above a weight hold p of the mass it lies
    // among them and only they need sorting. Those below this cut hold less than (1 - p) of the mass together, so
    // the rest hold at least p (checked all the same, for rounding).
    const cut = (1 - topP) * total / kept.length;
    const likely = kept.filter((id) => weight(id) >= cut);
    let mass = 0;
    for (const id of likely) mass += weight(id);
    if (mass >= topP * total) kept = likely;
  }
  const order = Uint32Array.from(kept);
  const w = new Float64Array(order.length);
  order.forEach((id, j) => { w[j] = weight(id); });
  const byWeight = Array.from(order.keys()).sort((a, b) => w[b] - w[a] || order[a] - order[b]);
  let n = byWeight.length;
  if (topP < 1) {
    let before = 0;
    for (n = 0; n < byWeight.length && (n === 0 || before < topP * total); n++) before += w[byWeight[n]];
  }
  const ids = new Uint32Array(n);
  const probs = new Float64Array(n);
  let sum = 0;
  for (let j = 0; j < n; j++) sum += w[byWeight[j]];
  for (let j = 0; j < n; j++) {
    ids[j] = order[byWeight[j]];
    probs[j] = w[byWeight[j]] / sum;
  }
  return { ids, probs };
}

/** The token at which the cumulative probability first exceeds u (u uniform in [0, 1)). */
export function drawToken(dist: Distribution, u: number): number {
  let cum = 0;
  for (let j = 0; j < dist.ids.length; j++) {
    cum += dist.probs[j];
    if (u < cum) return dist.ids[j];
  }
  // Rounding can leave the sum a hair below 1.
  return dist.ids[dist.ids.length - 1];
}

/** Mulberry32: a small, fast seeded PRNG, uniform in [0, 1). Good enough for sampling, not for cryptography. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The k-th largest value (k >= 1), NaN counting as -Infinity. Quickselect, O(n) on average. */
function kthLargest(values: ArrayLike<number>, k: number): number {
  const a = Float32Array.from(values, (v) => (Number.isNaN(v) ? -Infinity : v));
  const target = k - 1;
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

// ---- Engine: a model with its tokenizer and generation defaults ----

/** HF generation_config.json fields that set generation defaults. */
export function generationDefaults(json: Record<string, unknown>): GenerateOptions {
  const num = (key: string) => (typeof json[key] === "number" ? (json[key] as number) : undefined);
  const out: GenerateOptions = {};
  if (typeof json.do_sample === "boolean") out.doSample = json.do_sample;
  const fields: [keyof GenerateOptions, string][] = [
    ["temperature", "temperature"], ["topK", "top_k"], ["topP", "top_p"],
    ["repetitionPenalty", "repetition_penalty"], ["maxNewTokens", "max_new_tokens"],
  ];
  for (const [opt, key] of fields) {
    const v = num(key);
    if (v !== undefined) (out as Record<string, unknown>)[opt] = v;
  }
  return out;
}

export interface EngineLoadOptions extends LoadOptions {
  tokenizer?: TextTokenizer;
}

/** A loaded model with what generating text from it needs. */
export class Engine {
  constructor(
    readonly model: Qwen2Model,
    readonly tokenizer: TextTokenizer,
    /** Absent when the tokenizer has no chat template (raw-text and id prompts still work). */
    readonly chatTemplate: ChatTemplate | undefined,
    /** From generation_config.json; the options of each call override them. */
    readonly defaults: GenerateOptions = {},
  ) {}

  /** `opts.tokenizer`: one already loaded from `dir` (e.g. to check it before uploading the weights). */
  static async load(device: GPUDevice, dir: ModelDir, opts: EngineLoadOptions = {}): Promise<Engine> {
    const { tokenizer: given, ...loadOpts } = opts;
    const [model, tokenizer] = await Promise.all([Qwen2Model.load(device, dir, loadOpts), given ?? TextTokenizer.load(dir)]);
    const defaults = (await dir.exists("generation_config.json"))
      ? generationDefaults(await readJson(dir, "generation_config.json"))
      : {};
    const chatTemplate = tokenizer.chatTemplate === undefined ? undefined : ChatTemplate.fromTokenizer(tokenizer);
    return new Engine(model, tokenizer, chatTemplate, defaults);
  }

  generate(prompt: Prompt, opts: GenerateOptions = {}): Promise<GenerateResult> {
    return generate(this.model, this.tokenizer, prompt, this.options(opts));
  }

  generateStream(prompt: Prompt, opts: GenerateOptions = {}): AsyncGenerator<string, GenerateResult, undefined> {
    return generateStream(this.model, this.tokenizer, prompt, this.options(opts));
  }

  private options(opts: GenerateOptions): GenerateOptions {
    return { chatTemplate: this.chatTemplate, ...this.defaults, ...opts };
  }
}
