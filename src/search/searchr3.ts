// Search-R3 embeddings. A Search-R3 model is a Qwen2.5 fine-tune that ends its answer with the added special token
// <|embed_token|>; the embedding of a text is the final-norm hidden state at that token. Documents (and queries
// without reasoning) get a chat prompt whose assistant turn is teacher-forced to end on the token; queries with
// reasoning let the model write until it emits the token itself.
import type { ModelDir } from "../io/files.ts";
import { asModelFolder, type ModelFolder } from "../model/folder.ts";
import type { LoadOptions } from "../model/qwen2.ts";
import type { ChatTemplate } from "../text/chat.ts";
import { Engine } from "../text/engine.ts";
import type { GenerateOptions, GenerateResult, StopReason } from "../text/generate.ts";
import { TextTokenizer } from "../text/tokenizer.ts";
import { Scheduler } from "../text/scheduler.ts";
import { inBatches } from "../util/pool.ts";
import { l2normalize } from "./similarity.ts";

export type TextKind = "document" | "query";

export interface SearchR3Options {
  /** Longest token sequence the model sees (prompt included), as the reference's max_length. Default 1024. */
  maxLength?: number;
  /**
   * Texts embedded together (one packed forward pass) and queries reasoned about together (continuous batching), as
   * the reference's batch_size. Default: the model's KV-cache slots (SearchR3.load gives it DEFAULT_BATCH_SIZE).
   */
  batchSize?: number;
  /** Default "<|embed_token|>"; its id comes from the tokenizer. */
  embedToken?: string;
  /** System prompt for documents. Default "Please represent the document." */
  documentSystem?: string;
  /** System prompt for queries embedded without reasoning. Default "Please represent user queries." */
  querySystem?: string;
  /** System prompt for queries the model reasons about (generate). Default: querySystem. */
  reasoningSystem?: string;
  /** Teacher-forced assistant turn for encode; must end with the embed token. Default "The embedding is <|embed_token|>". */
  embedPrompt?: string;
  /**
   * Appended to a generation that stopped without the embed token, so that it still has a position to read; must
   * end with the embed token. Default "\nThe final embedding is: <|embed_token|>".
   */
  embedSuffix?: string;
  /** Called when a text is truncated to maxLength. Default: console.warn of the message. */
  onWarning?: (message: string, truncation: Truncation) => void;
}

export interface SearchR3LoadOptions extends SearchR3Options {
  /** Passed to the model loader; maxSeqLen defaults to maxLength. */
  model?: LoadOptions;
}

/** What truncation did to one text. */
export interface Truncation {
  /** "rendered": a text that already ended with the embed token, used as is. */
  kind: TextKind | "rendered";
  /** Index of the text in its batch. */
  index: number;
  /** Tokens of the whole sequence before truncation. */
  tokens: number;
  maxLength: number;
  /** Tokens cut from the text. */
  cut: number;
}

/** The token ids the model runs for one text; the embedding is the hidden state at the last one. */
export interface PreparedText {
  ids: number[];
  /** The rendered text that `ids` encode. */
  text: string;
  truncation?: Truncation;
}

export interface EncodeOptions {
  /** L2-normalize each embedding. Default true. */
  normalize?: boolean;
  /** Texts run through the model together, packed into one forward pass. Default: the SearchR3's batchSize. */
  batchSize?: number;
  /** The prompt for texts that do not already end with the embed token. Default "document". */
  kind?: TextKind;
  onProgress?: (done: number, total: number) => void;
}

export interface ReasoningOptions extends GenerateOptions {
  /** Queries reasoned about at once (continuous batching). Default: the SearchR3's batchSize. */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Receives the reasoning as it streams (never half of a UTF-8 character), with the query's index. */
  onText?: (chunk: string, index: number) => void;
}

export interface Reasoning {
  query: string;
  /**
   * The whole sequence, prompt included, ending with the embed token: what `encode` takes to embed the query in
   * the context it was reasoned about.
   */
  text: string;
  /** What the model wrote, without the embed token or the appended suffix. */
  reasoning: string;
  /** Whether the model emitted the embed token itself; if not, the embedSuffix was appended. */
  emittedEmbedToken: boolean;
  stopReason: "embed-token" | StopReason;
  generation: GenerateResult;
}

/** SearchR3.load's batch size (see SearchR3Options.batchSize): chosen by measurement, bench/NOTES.md "Batching". */
export const DEFAULT_BATCH_SIZE = 8;

const DEFAULTS = {
  maxLength: 1024,
  embedToken: "<|embed_token|>",
  documentSystem: "Please represent the document.",
  querySystem: "Please represent user queries.",
  embedPrompt: "The embedding is <|embed_token|>",
  embedSuffix: "\nThe final embedding is: <|embed_token|>",
};

/** The id of the embed token, which must be an added token that the tokenizer matches whole in text. */
export function embedTokenId(tokenizer: TextTokenizer, token: string, where: string): number {
  const id = tokenizer.tokenId(token);
  const ids = id === undefined ? [] : tokenizer.encode(token);
  if (id === undefined || ids.length !== 1 || ids[0] !== id) {
    throw new Error(`${where}: the tokenizer has no added token "${token}". Search-R3 reads the embedding at that token, ` +
      "so the model must be a Search-R3 checkpoint whose tokenizer adds it (tokenizer.json added_tokens).");
  }
  return id;
}

export class SearchR3 {
  readonly maxLength: number;
  readonly batchSize: number;
  readonly embedToken: string;
  readonly embedTokenId: number;
  readonly documentSystem: string;
  readonly querySystem: string;
  readonly reasoningSystem: string;
  readonly embedPrompt: string;
  readonly embedSuffix: string;
  private readonly chat: ChatTemplate;
  private readonly suffixTokens: number;
  private readonly warn: (message: string, truncation: Truncation) => void;

  constructor(readonly engine: Engine, opts: SearchR3Options = {}) {
    const { model, tokenizer } = engine;
    this.maxLength = opts.maxLength ?? DEFAULTS.maxLength;
    this.batchSize = opts.batchSize ?? model.maxBatch;
    this.embedToken = opts.embedToken ?? DEFAULTS.embedToken;
    this.documentSystem = opts.documentSystem ?? DEFAULTS.documentSystem;
    this.querySystem = opts.querySystem ?? DEFAULTS.querySystem;
    this.reasoningSystem = opts.reasoningSystem ?? this.querySystem;
    this.embedPrompt = opts.embedPrompt ?? DEFAULTS.embedPrompt;
    this.embedSuffix = opts.embedSuffix ?? DEFAULTS.embedSuffix;
    this.warn = opts.onWarning ?? ((message) => console.warn(message));

    this.embedTokenId = embedTokenId(tokenizer, this.embedToken, "SearchR3");
    if (this.embedTokenId >= model.config.vocabSize) {
      throw new Error(`SearchR3: "${this.embedToken}" is id ${this.embedTokenId}, outside the model's ${model.config.vocabSize} embedding rows`);
    }
    if (!engine.chatTemplate) throw new Error("SearchR3: the tokenizer has no chat template");
    this.chat = engine.chatTemplate;
    for (const [name, text] of [["embedPrompt", this.embedPrompt], ["embedSuffix", this.embedSuffix]]) {
      if (tokenizer.encode(text).at(-1) !== this.embedTokenId) {
        throw new Error(`SearchR3: ${name} ${JSON.stringify(text)} must end with ${this.embedToken}`);
      }
    }
    this.suffixTokens = tokenizer.encode(this.embedSuffix).length;
    if (!Number.isInteger(this.maxLength) || this.maxLength <= this.suffixTokens) {
      throw new Error(`SearchR3: maxLength ${this.maxLength} must be an integer above the ${this.suffixTokens} tokens of embedSuffix`);
    }
    if (model.maxSeqLen < this.maxLength) {
      throw new Error(`SearchR3: maxLength ${this.maxLength} exceeds the model's KV cache of ${model.maxSeqLen} tokens (load it with maxSeqLen >= maxLength)`);
    }
  }

  /** Checks the tokenizer for the embed token before the weights are uploaded. */
  static async load(device: GPUDevice, source: ModelDir | ModelFolder, opts: SearchR3LoadOptions = {}): Promise<SearchR3> {
    const folder = await asModelFolder(source);
    const tokenizer = await TextTokenizer.load(folder.dir);
    embedTokenId(tokenizer, opts.embedToken ?? DEFAULTS.embedToken, folder.dir.name);
    const { model, ...options } = opts;
    const engine = await Engine.load(device, folder, {
      maxSeqLen: opts.maxLength ?? DEFAULTS.maxLength, maxBatch: opts.batchSize ?? DEFAULT_BATCH_SIZE, ...model, tokenizer,
    });
    return new SearchR3(engine, options);
  }

  /** Frees the model's GPU buffers; this SearchR3 is unusable afterwards. */
  destroy(): void {
    this.engine.destroy();
  }

  /**
   * Lets the model reason about each query (greedy unless the options or generation_config.json say otherwise)
   * until it emits the embed token, or appends embedSuffix where it stopped without it (EOS or the length limit).
   * The prompt plus the reasoning plus the suffix stay within maxLength tokens as generated: a long query is
   * truncated as in `encode`, leaving room for the suffix, and generation stops at maxLength minus the suffix.
   * `encode` re-tokenizes the text, which can come out a token longer where the suffix merges with the end of the
   * reasoning (e.g. "\r\n" + "\n"); at the limit it then cuts that much, with a warning.
   */
  async generate(queries: readonly string[], opts: ReasoningOptions = {}): Promise<Reasoning[]> {
    const { onProgress, onText, batchSize, ...genOpts } = opts;
    const prompts = queries.map((query, index) => this.fit(query, "query", index, this.reasoningSystem, "", this.maxLength - this.suffixTokens));
    let done = 0;
    return inBatches(queries.length, this.checkBatchSize(batchSize), async (index) => {
      const prompt = prompts[index];
      const room = this.maxLength - prompt.ids.length - this.suffixTokens;
      const stream = this.engine.generateStream({ ids: prompt.ids }, {
        ...genOpts,
        maxNewTokens: Math.min(genOpts.maxNewTokens ?? room, room),
        stopIds: [...(genOpts.stopIds ?? []), this.embedTokenId],
      });
      let next = await stream.next();
      for (; !next.done; next = await stream.next()) onText?.(next.value, index);
      const generation = next.value;
      const emitted = generation.stopId === this.embedTokenId;
      onProgress?.(++done, queries.length);
      return {
        query: queries[index],
        text: prompt.text + generation.text + (emitted ? this.embedToken : this.embedSuffix),
        reasoning: generation.text,
        emittedEmbedToken: emitted,
        stopReason: emitted ? "embed-token" : generation.stopReason,
        generation,
      };
    });
  }

  /**
   * One embedding per text. A text whose tokens end with the embed token (e.g. `generate`'s output) is used as is;
   * any other text is wrapped in the document (or query) prompt.
   */
  async encode(texts: readonly string[], opts: EncodeOptions = {}): Promise<Float32Array[]> {
    const batchSize = this.checkBatchSize(opts.batchSize);
    const prepared = texts.map((text, index) => this.prepare(text, opts.kind ?? "document", index).ids);
    const { model } = this.engine;
    const out: Float32Array[] = [];
    while (out.length < prepared.length) {
      const start = out.length;
      // Between the steps of any generation running on the model, in the slots it leaves free.
      const rows = await Scheduler.of(model).use(async (slots) => {
        const group = prepared.slice(start, start + slots.length);
        for (const slot of slots) model.resetSlot(slot);
        return model.forward(group.map((ids, i) => ({ slot: slots[i], ids })), { head: false, capture: ["final_norm"], captureRows: "last" });
      }, Math.min(batchSize, prepared.length - start));
      for (const r of rows) {
        const hidden = r.captured.get("final_norm")!;
        out.push(opts.normalize ?? true ? l2normalize(hidden) : hidden);
        opts.onProgress?.(out.length, texts.length);
      }
    }
    return out;
  }

  /** The batch size asked for, or this SearchR3's; no more than the model has KV-cache slots for. */
  private checkBatchSize(given: number | undefined): number {
    const n = given ?? this.batchSize;
    const { maxBatch } = this.engine.model;
    if (!Number.isInteger(n) || n < 1) throw new Error(`SearchR3: batchSize must be a positive integer, got ${n}`);
    if (n > maxBatch) {
      throw new Error(`SearchR3: batchSize ${n} is more than the ${maxBatch} sequences the model holds (load with batchSize >= ${n})`);
    }
    return n;
  }

  /** Embeds a query, either directly (teacher-forced prompt) or after letting the model reason about it. */
  async encodeQuery(query: string, opts: { reasoning?: boolean; normalize?: boolean } & GenerateOptions = {}): Promise<Float32Array> {
    const { reasoning, normalize, ...genOpts } = opts;
    const text = reasoning ? (await this.generate([query], genOpts))[0].text : query;
    return (await this.encode([text], { kind: "query", normalize }))[0];
  }

  /**
   * The ids `encode` runs for a text: its last id is the embed token, and there are at most maxLength of them.
   * Truncation cuts the end of the user's text, never the template around it, so the system prompt and the
   * teacher-forced ending that the embedding depends on survive. A text that already ends with the embed token has
   * no template to tell apart from its content: its head is kept and the embed token put back at the end.
   */
  prepare(text: string, kind: TextKind = "document", index = 0): PreparedText {
    const ids = this.engine.tokenizer.encode(text);
    if (ids.at(-1) !== this.embedTokenId) {
      const system = kind === "query" ? this.querySystem : this.documentSystem;
      return this.fit(text, kind, index, system, this.embedPrompt, this.maxLength);
    }
    if (ids.length <= this.maxLength) return { ids, text };
    const kept = [...ids.slice(0, this.maxLength - 1), this.embedTokenId];
    const truncation: Truncation = { kind: "rendered", index, tokens: ids.length, maxLength: this.maxLength, cut: ids.length - kept.length };
    this.warn(`SearchR3: text ${index} is ${ids.length} tokens, over maxLength ${this.maxLength}; ` +
      `cut ${truncation.cut} tokens before its final ${this.embedToken}`, truncation);
    return { ids: kept, text: this.engine.tokenizer.decode(kept), truncation };
  }

  /** The chat prompt around `user`, with `user` cut (from its end) until the whole fits in `budget` tokens. */
  private fit(user: string, kind: TextKind, index: number, system: string, assistant: string, budget: number): PreparedText {
    const { tokenizer } = this.engine;
    const render = (content: string) => this.chat.render(
      [{ role: "system", content: system }, { role: "user", content }], { addGenerationPrompt: true }) + assistant;
    let text = render(user);
    let ids = tokenizer.encode(text);
    if (ids.length <= budget) return { ids, text };

    const tokens = ids.length;
    const userIds = tokenizer.encode(user);
    const whole = tokenizer.decode(userIds);
    let keep = userIds.length;
    // Text and tokens do not map one to one where the cut meets the template, so re-encode until it fits.
    while (ids.length > budget && keep > 0) {
      keep = Math.max(0, keep - (ids.length - budget));
      // A cut inside a multi-byte character would decode to U+FFFD; cut before that character instead.
      while (keep > 0 && !whole.startsWith(tokenizer.decode(userIds.slice(0, keep)))) keep--;
      text = render(tokenizer.decode(userIds.slice(0, keep)));
      ids = tokenizer.encode(text);
    }
    if (ids.length > budget) {
      throw new Error(`SearchR3: the ${kind} prompt without any text is ${ids.length} tokens, over the ${budget} that maxLength ${this.maxLength} leaves`);
    }
    const truncation: Truncation = { kind, index, tokens, maxLength: this.maxLength, cut: userIds.length - keep };
    this.warn(`SearchR3: ${kind} ${index} is ${tokens} tokens with its prompt, over the ${budget} allowed ` +
      `(maxLength ${this.maxLength}); cut the last ${truncation.cut} of its ${userIds.length} text tokens`, truncation);
    return { ids, text, truncation };
  }
}
