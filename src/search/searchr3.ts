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
  /**
   * "rendered": a text that already ended with the embed token, used as is; "reasoning": what the model wrote about a
   * query, which re-tokenized to more than maxLength allows (see `generate`).
   */
  kind: TextKind | "rendered" | "reasoning";
  /** Index of the text in its batch. */
  index: number;
  /** Tokens of the whole sequence before truncation. */
  tokens: number;
  maxLength: number;
  /** Tokens cut from the text (for "reasoning": of the tokens the model wrote, those not kept whole). */
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
  /**
   * The most tokens the model writes about each query before the embed token. Default DEFAULT_REASONING_TOKENS (256),
   * and never more than maxLength leaves beside the prompt and the suffix.
   */
  maxNewTokens?: number;
  onProgress?: (done: number, total: number) => void;
  /** Receives the reasoning as it streams (never half of a UTF-8 character), with the query's index. */
  onText?: (chunk: string, index: number) => void;
  /** Receives each query's reasoning once it is finished (queries reasoned about together finish in any order). */
  onReasoning?: (reasoning: Reasoning, index: number) => void;
}

export interface Reasoning {
  query: string;
  /**
   * The whole sequence, prompt included, ending with the embed token: what `encode` takes to embed the query in
   * the context it was reasoned about.
   */
  text: string;
  /** What the model wrote, without the embed token or the appended suffix (and cut as `truncations` say). */
  reasoning: string;
  /** Whether `text` ends with the embed token the model emitted itself; if not, the embedSuffix was appended. */
  emittedEmbedToken: boolean;
  stopReason: "embed-token" | StopReason;
  /** The cuts that made the whole fit maxLength: of the query (kind "query"), of the reasoning (kind "reasoning"). */
  truncations: Truncation[];
  /** The generation as it ran: all the tokens and text the model wrote, before any cut. */
  generation: GenerateResult;
}

/** SearchR3.load's batch size (see SearchR3Options.batchSize): chosen by measurement, bench/NOTES.md "Batching". */
export const DEFAULT_BATCH_SIZE = 8;

/**
 * Tokens the model may write about a query by default: a model that never writes the embed token stops here rather
 * than at maxLength (about 1000 tokens, minutes on a CPU adapter). The Search-R3 model card's example uses 256.
 */
export const DEFAULT_REASONING_TOKENS = 256;

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
   * until it emits the embed token, or appends embedSuffix where it stopped without it (EOS, `maxNewTokens`, default
   * DEFAULT_REASONING_TOKENS = 256, or the length limit). The returned `text` is what `encode` embeds, and it
   * re-tokenizes to at most maxLength tokens, so `encode` never cuts it: a long query is truncated as in `encode`,
   * leaving room for the suffix; generation stops at maxLength minus the suffix; and where the text, re-tokenized,
   * still comes out longer (see fitReasoning), the reasoning is cut until it fits, with a warning. `truncations` says
   * what was cut.
   */
  async generate(queries: readonly string[], opts: ReasoningOptions = {}): Promise<Reasoning[]> {
    const { onProgress, onText, onReasoning, batchSize, ...genOpts } = opts;
    const prompts = queries.map((query, index) => this.fit(query, "query", index, this.reasoningSystem, "", this.maxLength - this.suffixTokens));
    let done = 0;
    return inBatches(queries.length, this.checkBatchSize(batchSize), async (index) => {
      const prompt = prompts[index];
      const room = this.maxLength - prompt.ids.length - this.suffixTokens;
      const stream = this.engine.generateStream({ ids: prompt.ids }, {
        ...genOpts,
        maxNewTokens: Math.min(genOpts.maxNewTokens ?? DEFAULT_REASONING_TOKENS, room),
        stopIds: [...(genOpts.stopIds ?? []), this.embedTokenId],
      });
      let next = await stream.next();
      for (; !next.done; next = await stream.next()) onText?.(next.value, index);
      const generation = next.value;
      const emitted = generation.stopId === this.embedTokenId;
      const fitted = this.fitReasoning(prompt.text, generation, emitted, index);
      const reasoning: Reasoning = {
        query: queries[index],
        text: fitted.text,
        reasoning: fitted.reasoning,
        emittedEmbedToken: fitted.emitted,
        stopReason: emitted ? "embed-token" : generation.stopReason,
        truncations: [prompt.truncation, fitted.truncation].filter((t) => t !== undefined),
        generation,
      };
      onReasoning?.(reasoning, index);
      onProgress?.(++done, queries.length);
      return reasoning;
    });
  }

  /**
   * Prompt, reasoning and ending (the model's embed token, or the suffix) as one text within maxLength tokens as
   * `encode` will tokenize it. Generation counts the tokens the model writes, but `encode` re-tokenizes the text, and
   * tokens do not all survive that round trip: many that the model can write re-encode as several (on the Qwen2.5
   * vocabulary, Thai tokens such as "แจ้ง" as 2 and "เมื่อวันที่" as 7, since the tokenizer splits text at
   * combining marks before it merges), and the suffix can merge with the reasoning's last characters ("\r\n" +
   * "\n"). 989 tokens of a random model's reasoning re-encode as 1028. Where the whole is over maxLength, the reasoning
   * is cut from its end, by characters, to the longest that fits with the suffix.
   */
  private fitReasoning(promptText: string, generation: GenerateResult, emitted: boolean, index: number) {
    const { tokenizer } = this.engine;
    const reasoning = generation.text;
    const ending = emitted ? this.embedToken : this.embedSuffix;
    const tokens = tokenizer.encode(promptText + reasoning + ending).length;
    if (tokens <= this.maxLength) return { text: promptText + reasoning + ending, reasoning, emitted };

    const chars = [...reasoning];
    const fits = (n: number) => tokenizer.encode(promptText + chars.slice(0, n).join("") + this.embedSuffix).length <= this.maxLength;
    // The prompt and the suffix alone fit (generate's budget), so 0 characters do; binary search for the most that do.
    let [lo, hi] = [0, chars.length - 1];
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (fits(mid)) lo = mid;
      else hi = mid - 1;
    }
    const kept = chars.slice(0, lo).join("");
    // The cut counts the model's tokens that did not stay whole: those after the longest run of them within `kept`.
    const written = generation.stopId === undefined ? generation.ids : generation.ids.slice(0, -1);
    let whole = written.length;
    while (whole > 0 && !kept.startsWith(tokenizer.decode(written.slice(0, whole)))) whole--;
    const cut = written.length - whole;
    const truncation: Truncation = { kind: "reasoning", index, tokens, maxLength: this.maxLength, cut };
    this.warn(`SearchR3: query ${index} with its reasoning re-tokenizes to ${tokens} tokens, over maxLength ` +
      `${this.maxLength}; cut the last ${cut} of the ${written.length} tokens the model wrote` +
      (emitted ? `, and appended the suffix in place of its ${this.embedToken}` : ""), truncation);
    return { text: promptText + kept + this.embedSuffix, reasoning: kept, emitted: false, truncation };
  }

  /**
   * One embedding per text. A text whose tokens end with the embed token (e.g. `generate`'s output) is used as is;
   * any other text is wrapped in the document (or query) prompt.
   */
  async encode(texts: readonly string[], opts: EncodeOptions = {}): Promise<Float32Array[]> {
    return this.encodeIds(texts.map((text, index) => this.prepare(text, opts.kind ?? "document", index).ids), opts);
  }

  /**
   * The embeddings of texts already prepared (`prepare`'s ids: each ends with the embed token, within maxLength),
   * batchSize of them packed into each forward pass.
   */
  async encodeIds(prepared: readonly (readonly number[])[], opts: Omit<EncodeOptions, "kind"> = {}): Promise<Float32Array[]> {
    const batchSize = this.checkBatchSize(opts.batchSize);
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
        opts.onProgress?.(out.length, prepared.length);
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
