// One sequence being generated: its options checked and resolved, its own sampling state (PRNG, seen tokens), and
// what happens to each new token: stop ids, detokenization without split characters, stop strings, the token and
// context limits, the caller's abort signal. The scheduler runs many of these through the model together.
import { mulberry32 } from "../util/prng.ts";
import type { GenerateOptions, GenerateResult, StopReason } from "./generate.ts";
import { applyRepetitionPenalty, argmax, drawToken, samplingDistribution, type SamplingParams } from "./sampling.ts";
import { StopStringScanner } from "./stop-strings.ts";
import { StreamDecoder, type TextTokenizer } from "./tokenizer.ts";

export const DEFAULT_MAX_NEW_TOKENS = 256;

function checkOptions(maxNewTokens: number, penalty: number, p: Required<SamplingParams>): void {
  const fail = (msg: string): never => { throw new Error(`generate: ${msg}`); };
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) fail(`maxNewTokens must be an integer >= 0, got ${maxNewTokens}`);
  if (!(penalty > 0)) fail(`repetitionPenalty must be > 0, got ${penalty}`);
  if (!(p.temperature >= 0)) fail(`temperature must be >= 0, got ${p.temperature}`);
  if (!Number.isInteger(p.topK) || p.topK < 0) fail(`topK must be an integer >= 0, got ${p.topK}`);
  if (!(p.topP > 0 && p.topP <= 1)) fail(`topP must be in (0, 1], got ${p.topP}`);
}

export class GenerationSequence {
  readonly maxNewTokens: number;
  /** Logits leave the GPU only when the host must change or sample them; plain greedy uses the GPU's argmax. */
  readonly hostLogits: boolean;
  /** The last token chosen and not yet fed to the model. */
  pending: number | undefined;
  readonly ids: number[] = [];
  prefillSeconds = 0;
  decodeSeconds = 0;
  private readonly limit: number;
  private readonly sampling: boolean;
  private readonly penalty: number;
  private readonly params: Required<SamplingParams>;
  private readonly seed: number | undefined;
  private readonly random: () => number;
  private readonly eos: Set<number>;
  private readonly stops: Set<number>;
  private readonly seen: Set<number>;
  private readonly text: StopStringScanner;
  private readonly decoder: StreamDecoder;
  private stopReason: StopReason;
  private stopId: number | undefined;
  private done = false;
  /** Set when the caller gives the generation up (its stream closed early): as good as an aborted signal. */
  private cancelled = false;

  /** `room`: positions the model's KV cache has for this sequence. */
  constructor(readonly promptIds: readonly number[], tokenizer: TextTokenizer, defaultEos: readonly number[], room: number,
    private readonly opts: GenerateOptions) {
    this.maxNewTokens = opts.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
    this.penalty = opts.repetitionPenalty ?? 1;
    const temperature = opts.temperature ?? 1;
    this.sampling = (opts.doSample ?? false) && temperature > 0;
    this.params = { temperature, topK: opts.topK ?? 50, topP: opts.topP ?? 1 };
    checkOptions(this.maxNewTokens, this.penalty, this.params);
    this.seed = this.sampling ? (opts.seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0 : undefined;
    this.random = mulberry32(this.seed ?? 0);
    this.hostLogits = this.sampling || this.penalty !== 1;
    this.eos = new Set(opts.eosTokenIds ?? defaultEos);
    this.stops = new Set(opts.stopIds ?? []);
    this.seen = new Set(promptIds);
    // A prefill of P tokens yields the first new token; each later one needs the previous one in the cache.
    this.limit = Math.min(this.maxNewTokens, room - promptIds.length + 1);
    this.stopReason = this.limit === this.maxNewTokens ? "length" : "context";
    this.text = new StopStringScanner(opts.stopStrings ?? []);
    this.decoder = new StreamDecoder(tokenizer, { skipSpecialTokens: opts.skipSpecialTokens });
  }

  get finished(): boolean {
    return this.done;
  }

  get aborted(): boolean {
    return this.cancelled || this.opts.signal?.aborted === true;
  }

  cancel(): void {
    this.cancelled = true;
  }

  /** The next token from the step's result: the GPU's argmax, or the host's choice from the logits. */
  choose(gpuArgmax: number, logits: Float32Array | undefined): number {
    if (!this.hostLogits) return gpuArgmax;
    if (this.penalty !== 1) applyRepetitionPenalty(logits!, this.seen, this.penalty);
    return this.sampling ? drawToken(samplingDistribution(logits!, this.params), this.random()) : argmax(logits!);
  }

  /** Takes a new token; returns the text it releases. Afterwards `finished` says whether the sequence ended. */
  accept(next: number): string {
    this.ids.push(next);
    this.seen.add(next);
    if (this.eos.has(next) || this.stops.has(next)) {
      this.stopReason = this.eos.has(next) ? "eos" : "stop-id";
      this.stopId = next;
      return this.end();
    }
    let chunk = this.text.push(this.decoder.push(next));
    if (this.text.stopString !== undefined) {
      this.stopReason = "stop-string";
      this.done = true;
      return chunk;
    }
    if (this.ids.length >= this.limit) return chunk + this.end();
    if (this.aborted) {
      this.stopReason = "aborted";
      chunk += this.end();
    }
    this.pending = next;
    return chunk;
  }

  /** Ends the sequence where it stands (a stop, a limit, an abort); returns the text held back until now. */
  end(reason?: StopReason): string {
    if (reason) this.stopReason = reason;
    this.done = true;
    this.pending = undefined;
    if (this.text.stopString !== undefined) return "";
    const chunk = this.text.push(this.decoder.flush()) + this.text.end();
    if (this.text.stopString !== undefined) this.stopReason = "stop-string";
    return chunk;
  }

  result(): GenerateResult {
    const decodeTokens = Math.max(0, this.ids.length - 1);
    const prefillTokens = this.maxNewTokens > 0 ? this.promptIds.length : 0;
    return {
      text: this.text.text,
      ids: this.ids,
      stopReason: this.stopReason,
      stopId: this.stopId,
      stopString: this.text.stopString,
      prefillTokens,
      decodeTokens,
      prefillSeconds: this.prefillSeconds,
      decodeSeconds: this.decodeSeconds,
      prefillTokPerS: this.prefillSeconds > 0 ? prefillTokens / this.prefillSeconds : 0,
      decodeTokPerS: this.decodeSeconds > 0 ? decodeTokens / this.decodeSeconds : 0,
      seed: this.seed,
    };
  }
}
