// Text <-> token ids for Hugging Face tokenizers, on top of @huggingface/tokenizers.
import { Tokenizer } from "@huggingface/tokenizers";
import { readJson, type ModelDir } from "../io/files.ts";

/**
 * Which files to build the tokenizer from. "auto" prefers tokenizer.json and falls back to
 * vocab.json + merges.txt; "vocab-merges" forces the latter even where a tokenizer.json exists.
 * vocab.json + merges.txt do not say how text is split before BPE, so that path supports Qwen2Tokenizer only.
 */
export type TokenizerSource = "auto" | "tokenizer.json" | "vocab-merges";

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

// transformers' Qwen2Tokenizer (slow) splits text with this pattern; its tokenizer.json converter uses the same one.
const QWEN2_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// The keys of transformers' special_tokens_map, which chat templates receive as variables.
const SPECIAL_TOKEN_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

export class TextTokenizer {
  /** Number of ids that have a token (largest id + 1). A model's embedding table may have more rows. */
  readonly vocabSize: number;
  readonly eosTokenId: number | undefined;
  readonly chatTemplate: string | undefined;
  /** transformers' special_tokens_map (bos_token, eos_token, ..., additional_special_tokens) for templates. */
  readonly specialTokens: Readonly<Record<string, string | string[]>>;

  private constructor(
    private readonly tokenizer: Tokenizer,
    config: Record<string, any>,
    chatTemplateFile: string | undefined,
  ) {
    let maxId = -1;
    for (const id of tokenizer.get_vocab().values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.specialTokens = specialTokensMap(config);
    const eos = this.specialTokens.eos_token;
    this.eosTokenId = typeof eos === "string" ? this.tokenId(eos) : undefined;
    this.chatTemplate = chatTemplateFile ?? pickChatTemplate(config.chat_template);
  }

  static async load(dir: ModelDir, opts: { from?: TokenizerSource } = {}): Promise<TextTokenizer> {
    const from = opts.from ?? "auto";
    const has = async (files: string[]) => (await Promise.all(files.map((f) => dir.exists(f)))).every(Boolean);
    let tokenizerJson: object;
    let config: Record<string, any>;
    if (from !== "vocab-merges" && (await has(["tokenizer.json"]))) {
      tokenizerJson = await readJson(dir, "tokenizer.json");
      config = (await has(["tokenizer_config.json"])) ? await readJson(dir, "tokenizer_config.json") : {};
    } else if (from !== "tokenizer.json" && (await has(["vocab.json", "merges.txt", "tokenizer_config.json"]))) {
      config = await readJson(dir, "tokenizer_config.json");
      const cls = config.tokenizer_class;
      if (cls !== undefined && !/^Qwen2Tokenizer(Fast)?$/.test(cls)) {
        throw new Error(`${dir.name}: a tokenizer from vocab.json + merges.txt must be a Qwen2Tokenizer, not ${cls}`);
      }
      tokenizerJson = qwen2TokenizerJson(
        await readJson(dir, "vocab.json"),
        parseMerges(await dir.readText("merges.txt"), `${dir.name}/merges.txt`),
        config,
      );
    } else {
      const looked = {
        auto: "tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json",
        "tokenizer.json": "tokenizer.json",
        "vocab-merges": "vocab.json + merges.txt + tokenizer_config.json",
      }[from];
      throw new Error(`${dir.name}: no tokenizer files found (looked for ${looked})`);
    }
    // Newer transformers versions save the template as its own file, which then takes precedence.
    const templateFile = "chat_template.jinja";
    const chatTemplateFile = (await has([templateFile])) ? await dir.readText(templateFile) : undefined;
    return new TextTokenizer(new Tokenizer(tokenizerJson, config), config, chatTemplateFile);
  }

  /** Token ids of `text`, without BOS/EOS or other added special tokens; added tokens in the text match whole. */
  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** Ids without a token (e.g. padding rows of the embedding table) are left out. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.hasToken(id));
    // The library throws on an empty list instead of returning "".
    if (known.length === 0) return "";
    return this.tokenizer.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** Id of a token given as it appears in the vocabulary; added tokens such as "<|im_end|>" as their text. */
  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  hasToken(id: number): boolean {
    return this.tokenizer.id_to_token(id) !== undefined;
  }
}

/**
 * Turns generated ids into text as they arrive. A multi-byte character can be split across tokens, so text is held
 * back while its decoded form ends in U+FFFD that a later token could still complete. The concatenated output equals
 * `decode` of all ids for decoders whose output is the concatenation of per-token bytes (byte-level BPE).
 */
export class StreamDecoder {
  // Past this many held ids, the window is cut at a point that cannot change the result, to bound the re-decoding.
  private static readonly MAX_PENDING = 8;
  private pending: number[] = [];
  /** How many chars of decode(pending) were already returned. */
  private emitted = 0;

  constructor(
    private readonly tokenizer: TextTokenizer,
    private readonly opts: DecodeOptions = {},
  ) {}

  push(id: number): string {
    if (!this.tokenizer.hasToken(id)) return "";
    this.pending.push(id);
    const text = this.decode(this.pending);
    if (!text.endsWith("\uFFFD")) return this.take(text);
    // Only the final U+FFFD can stand for an incomplete sequence; everything before it is settled.
    const out = text.slice(this.emitted, -1);
    this.emitted = Math.max(this.emitted, text.length - 1);
    if (this.pending.length > StreamDecoder.MAX_PENDING) this.cut(text);
    return out;
  }

  flush(): string {
    return this.take(this.decode(this.pending));
  }

  private take(text: string): string {
    const out = text.slice(this.emitted);
    this.pending = [];
    this.emitted = 0;
    return out;
  }

  /**
   * An incomplete UTF-8 sequence has at most 3 bytes and every token at least one, so it starts within the last 3
   * ids. If the head's text joined to the tail's text gives the whole text, no sequence spans the cut (a
   * continuation byte after an unfinished head would be absorbed, changing the count of U+FFFD), so later ids cannot
   * change the head's text. The tail must hold the unsettled final char. If no such cut exists the window grows.
   */
  private cut(text: string): void {
    for (let keep = 1; keep <= 3; keep++) {
      const head = this.decode(this.pending.slice(0, -keep));
      const tail = this.decode(this.pending.slice(-keep));
      if (head + tail === text && head.length <= this.emitted) {
        this.pending = this.pending.slice(-keep);
        this.emitted -= head.length;
        return;
      }
    }
  }

  private decode(ids: number[]): string {
    return this.tokenizer.decode(ids, this.opts);
  }
}

function parseMerges(text: string, name: string): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || (i === 0 && line.startsWith("#version"))) return;
    const parts = line.split(" ");
    if (parts.length !== 2) throw new Error(`${name}:${i + 1}: expected two tokens separated by a space`);
    merges.push(parts as [string, string]);
  });
  return merges;
}

/** The tokenizer.json that transformers' Qwen2Converter would build from the slow tokenizer's files. */
function qwen2TokenizerJson(
  vocab: Record<string, number>,
  merges: [string, string][],
  config: Record<string, any>,
): object {
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  const addedTokens = Object.entries<Record<string, any>>(config.added_tokens_decoder ?? {}).map(([id, t]) => ({
    id: Number(id),
    content: t.content,
    single_word: t.single_word ?? false,
    lstrip: t.lstrip ?? false,
    rstrip: t.rstrip ?? false,
    normalized: t.normalized ?? !t.special,
    special: t.special ?? false,
  }));
  return {
    version: "1.0",
    added_tokens: addedTokens,
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_SPLIT_REGEX }, behavior: "Isolated", invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

// tokenizer_config.json stores a special token either as its text or as a serialized AddedToken object.
function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
    return (value as { content: string }).content;
  }
  return undefined;
}

function specialTokensMap(config: Record<string, any>): Record<string, string | string[]> {
  const map: Record<string, string | string[]> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const text = tokenText(config[key]);
    if (text !== undefined) map[key] = text;
  }
  const additional = (config.additional_special_tokens ?? []).map(tokenText).filter((t: unknown) => t !== undefined);
  if (additional.length > 0) map.additional_special_tokens = additional;
  return map;
}

// Some models keep several named templates as a list; transformers then uses the one named "default".
function pickChatTemplate(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.find((t) => t?.name === "default")?.template;
  return undefined;
}
