// Text <-> token ids for Hugging Face tokenizers, on top of @huggingface/tokenizers.
import { Tokenizer } from "@huggingface/tokenizers";
import { readJson, showValue, type ModelDir } from "../io/files.ts";

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

/**
 * Default bound of `encode`'s input, in UTF-16 code units: about 250k tokens of ordinary text (0.8 s), and at worst,
 * words as long as the piece bound below allows, 5.5 s and 0.2 GB.
 */
export const DEFAULT_MAX_INPUT_CHARS = 1 << 20;

// The library's BPE costs more than linearly in the length of one pre-tokenized piece (a run of letters, digits or
// spaces that the pre-tokenizer does not split): one million letters took 17 s and 0.8 GB with Qwen2.5's vocabulary.
// Ordinary text has pieces of a few characters. A piece is counted in the units BPE sees (UTF-8 bytes under
// byte-level BPE).
const MAX_PIECE_LENGTH = 20_000;

/** An error in `encode`'s argument (a text too long, or with too long a word) rather than in the tokenizer's files. */
export class TokenizerInputError extends Error {}

export interface TokenizerLoadOptions {
  from?: TokenizerSource;
  /** Longest text `encode` takes, in UTF-16 code units; longer ones are refused. Default DEFAULT_MAX_INPUT_CHARS. */
  maxInputChars?: number;
}

export class TextTokenizer {
  /** Number of ids that have a token (largest id + 1). A model's embedding table may have more rows. */
  readonly vocabSize: number;
  readonly eosTokenId: number | undefined;
  readonly chatTemplate: string | undefined;
  /** The file the chat template came from (tokenizer_config.json or chat_template.jinja), for error messages. */
  readonly chatTemplateFile: string | undefined;
  /** transformers' special_tokens_map (bos_token, eos_token, ..., additional_special_tokens) for templates. */
  readonly specialTokens: Readonly<Record<string, string | string[]>>;
  readonly maxInputChars: number;

  private constructor(
    private readonly tokenizer: Tokenizer,
    /** The tokenizer's files, for messages about errors inside the library. */
    private readonly origin: string,
    config: Record<string, any>,
    chatTemplateFile: string | undefined,
    maxInputChars: number,
  ) {
    let maxId = -1;
    for (const id of tokenizer.get_vocab().values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.specialTokens = specialTokensMap(config);
    const eos = this.specialTokens.eos_token;
    this.eosTokenId = typeof eos === "string" ? this.tokenId(eos) : undefined;
    const fromFile = chatTemplateFile !== undefined;
    this.chatTemplate = chatTemplateFile ?? pickChatTemplate(config.chat_template);
    this.chatTemplateFile = this.chatTemplate === undefined ? undefined : fromFile ? CHAT_TEMPLATE_FILE : "tokenizer_config.json";
    this.maxInputChars = maxInputChars;
    // The library's model is called with the pre-tokenized pieces of each text; a long one is refused before BPE.
    const model = tokenizer.model!;
    const encodePieces = model._call.bind(model);
    model._call = (pieces: string[]) => {
      for (const piece of pieces) {
        if (piece.length > MAX_PIECE_LENGTH) {
          throw new TokenizerInputError(`encode: the text holds a run of ${piece.length} characters that the pre-tokenizer does not ` +
            `split (one word, number or run of spaces), more than the ${MAX_PIECE_LENGTH} the tokenizer takes`);
        }
      }
      return encodePieces(pieces);
    };
  }

  static async load(dir: ModelDir, opts: TokenizerLoadOptions = {}): Promise<TextTokenizer> {
    const from = opts.from ?? "auto";
    const maxInputChars = opts.maxInputChars ?? DEFAULT_MAX_INPUT_CHARS;
    if (!Number.isSafeInteger(maxInputChars) || maxInputChars < 1) {
      throw new Error(`TextTokenizer.load: maxInputChars must be a positive integer, got ${maxInputChars}`);
    }
    const has = async (files: string[]) => (await Promise.all(files.map((f) => dir.exists(f)))).every(Boolean);
    const configName = `${dir.name}/tokenizer_config.json`;
    const readConfig = async () => checkTokenizerConfig(await readJson(dir, "tokenizer_config.json"), configName);
    let tokenizerJson: object;
    let config: Record<string, any>;
    let origin: string;
    if (from !== "vocab-merges" && (await has(["tokenizer.json"]))) {
      origin = `${dir.name}/tokenizer.json`;
      tokenizerJson = checkTokenizerJson(await readJson(dir, "tokenizer.json"), origin);
      config = (await has(["tokenizer_config.json"])) ? await readConfig() : {};
    } else if (from !== "tokenizer.json" && (await has(["vocab.json", "merges.txt", "tokenizer_config.json"]))) {
      origin = `${dir.name}/vocab.json + merges.txt`;
      config = await readConfig();
      const cls = config.tokenizer_class;
      if (cls !== undefined && !/^Qwen2Tokenizer(Fast)?$/.test(cls)) {
        throw new Error(`${dir.name}: a tokenizer from vocab.json + merges.txt must be a Qwen2Tokenizer, not ${cls}`);
      }
      const vocab = await readJson(dir, "vocab.json");
      const addedTokens = addedTokensDecoder(config.added_tokens_decoder, configName);
      checkIds(vocabEntries(vocab, `${dir.name}/vocab.json`), addedTokens, `${dir.name}/vocab.json`, configName);
      tokenizerJson = qwen2TokenizerJson(vocab, parseMerges(await dir.readText("merges.txt"), `${dir.name}/merges.txt`), addedTokens);
    } else {
      const looked = {
        auto: "tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json",
        "tokenizer.json": "tokenizer.json",
        "vocab-merges": "vocab.json + merges.txt + tokenizer_config.json",
      }[from];
      throw new Error(`${dir.name}: no tokenizer files found (looked for ${looked})`);
    }
    // Newer transformers versions save the template as its own file, which then takes precedence.
    const chatTemplateFile = (await has([CHAT_TEMPLATE_FILE])) ? await dir.readText(CHAT_TEMPLATE_FILE) : undefined;
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (e) {
      throw new Error(`${origin}: ${(e as Error).message}`);
    }
    return new TextTokenizer(tokenizer, origin, config, chatTemplateFile, maxInputChars);
  }

  /** Token ids of `text`, without BOS/EOS or other added special tokens; added tokens in the text match whole. */
  encode(text: string): number[] {
    if (text.length > this.maxInputChars) {
      throw new TokenizerInputError(`encode: the text has ${text.length} characters, more than the ${this.maxInputChars} the tokenizer takes`);
    }
    try {
      return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      if (e instanceof TokenizerInputError) throw e;
      throw new Error(`${this.origin}: encoding failed: ${(e as Error).message}`);
    }
  }

  /** Ids without a token (e.g. padding rows of the embedding table) are left out. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.hasToken(id));
    // The library throws on an empty list instead of returning "".
    if (known.length === 0) return "";
    try {
      return this.tokenizer.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false });
    } catch (e) {
      throw new Error(`${this.origin}: decoding failed: ${(e as Error).message}`);
    }
  }

  /** Id of a token given as it appears in the vocabulary; added tokens such as "<|im_end|>" as their text. */
  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  hasToken(id: number): boolean {
    return this.tokenizer.id_to_token(id) !== undefined;
  }

  /**
   * Refuses a tokenizer with ids past the model's embedding table (config.json's vocab_size), which would fail only
   * once text holding such a token reaches the model. `where` names the model.
   */
  checkFitsModel(vocabSize: number, where: string): void {
    if (this.vocabSize > vocabSize) {
      throw new Error(`${this.origin}: token id ${this.vocabSize - 1} is past the vocab_size ${vocabSize} of ${where}/config.json`);
    }
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

const CHAT_TEMPLATE_FILE = "chat_template.jinja";

// Load-time checks of the tokenizer files, made before @huggingface/tokenizers sees them: what the library would turn
// into a hang or a huge allocation (ids far past the vocabulary, which it sizes arrays and loops by; patterns that
// backtrack exponentially; text-expanding rules), into an error naming nothing, or into silently wrong tokens.

// Published tokenizers have tokens of at most a few hundred characters, and their components nest a few levels.
const MAX_TOKEN_LENGTH = 1024;
const MAX_COMPONENT_DEPTH = 32;
// How many times normalizers and pre-tokenizers may lengthen a text (Replace, Metaspace); published ones stay at 1-2.
const MAX_EXPANSION = 16;
const MAX_PREPEND = 16;

interface AddedTokenJson {
  id: number;
  content: string;
  [key: string]: unknown;
}

type JsonObject = Record<string, unknown>;

function isObject(x: unknown): x is JsonObject {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function tokenEntry(token: unknown, id: unknown, what: string, file: string): void {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) {
    throw new Error(`${file}: ${what} must be a string of at most ${MAX_TOKEN_LENGTH} characters, got ` +
      (typeof token === "string" ? `one of ${token.length}` : showValue(token)));
  }
  if (!Number.isSafeInteger(id) || (id as number) < 0) {
    throw new Error(`${file}: ${what} ${showValue(token)} has id ${showValue(id)}, not a non-negative integer`);
  }
}

/** The [token, id] pairs of a BPE or WordPiece vocabulary object. */
function vocabEntries(vocab: unknown, file: string): [string, number][] {
  if (!isObject(vocab)) throw new Error(`${file}: the vocabulary must be an object mapping tokens to ids`);
  const entries = Object.entries(vocab);
  for (const [token, id] of entries) tokenEntry(token, id, "vocabulary token", file);
  return entries as [string, number][];
}

function checkAddedTokens(list: unknown, file: string): AddedTokenJson[] {
  if (!Array.isArray(list)) throw new Error(`${file}: added_tokens must be a list`);
  for (const t of list) {
    if (!isObject(t)) throw new Error(`${file}: added_tokens holds ${showValue(t)}, not a token object`);
    tokenEntry(t.content, t.id, "added token", file);
  }
  return list;
}

/** tokenizer_config.json's added_tokens_decoder ({"151643": {"content": ...}}) as tokenizer.json's added_tokens. */
function addedTokensDecoder(decoder: unknown, file: string): AddedTokenJson[] {
  if (decoder === undefined) return [];
  if (!isObject(decoder)) throw new Error(`${file}: added_tokens_decoder must be an object`);
  return checkAddedTokens(Object.entries(decoder).map(([id, t]) => {
    if (!isObject(t)) throw new Error(`${file}: added_tokens_decoder entry "${id}" is not a token object`);
    return {
      id: /^\d+$/.test(id) ? Number(id) : id,
      content: t.content,
      single_word: t.single_word ?? false,
      lstrip: t.lstrip ?? false,
      rstrip: t.rstrip ?? false,
      normalized: t.normalized ?? !t.special,
      special: t.special ?? false,
    } as AddedTokenJson;
  }), `${file}: added_tokens_decoder`);
}

/**
 * The library makes an array as long as the largest id and loops over it, so one id of 2^31 hangs it. Published
 * vocabularies are dense; an id past twice the number of tokens is refused.
 */
function checkIds(vocab: [string, number][], added: AddedTokenJson[], vocabFile: string, addedFile: string): void {
  const limit = 2 * (vocab.length + added.length) + 256;
  const check = (token: string, id: number, what: string, file: string) => {
    if (id >= limit) {
      throw new Error(`${file}: ${what} ${showValue(token)} has id ${id}, far past the ` +
        `${vocab.length + added.length} tokens of the vocabulary (ids must stay below ${limit})`);
    }
  };
  for (const [token, id] of vocab) check(token, id, "vocabulary token", vocabFile);
  for (const t of added) check(t.content, t.id, "added token", addedFile);
}

/**
 * Whether a pattern (in the Oniguruma syntax of tokenizer.json) repeats a group that itself holds a repetition or an
 * alternation, like (a+)+ or (a|aa)*: the shapes whose backtracking takes exponential time on a failing match.
 * JavaScript cannot interrupt a running regex, so such a pattern is refused at load rather than tried on input.
 */
function repeatsAmbiguousGroup(pattern: string): boolean {
  // Per open group: whether it holds a quantifier or an alternation.
  const open: boolean[] = [];
  // Whether the atom just read is such a group.
  let risky = false;
  let i = 0;
  const mark = () => {
    if (open.length > 0) open[open.length - 1] = true;
  };
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === "\\") {
      // \p{L}, \x{263a}, \k<name> and the like run to their closing bracket.
      const close = { "{": "}", "<": ">" }[pattern[i + 2] as "{" | "<"];
      i = close && "pPxuokg".includes(pattern[i + 1]) ? pattern.indexOf(close, i) + 1 || pattern.length : i + 2;
      risky = false;
    } else if (c === "[") {
      i = endOfClass(pattern, i);
      risky = false;
    } else if (c === "(") {
      i = groupBodyStart(pattern, i);
      if (i < 0) {
        // A comment or an inline flag change, not a group.
        i = -i;
      } else {
        open.push(false);
      }
      risky = false;
    } else if (c === ")") {
      risky = open.pop() ?? false;
      if (risky) mark();
      i++;
    } else if (c === "|") {
      mark();
      risky = false;
      i++;
    } else {
      const q = quantifier(pattern, i);
      if (q === undefined) {
        risky = false;
        i++;
        continue;
      }
      if (q.repeats && risky) return true;
      mark();
      i += q.length;
      // In Oniguruma, a{1,3}+ is (a{1,3})+: a repetition of a repetition.
      if (q.brace && q.variable && (pattern[i] === "+" || pattern[i] === "*")) return true;
      risky = false;
    }
  }
  return false;
}

/** The quantifier at `i`, if any: whether it repeats (may match its atom twice or more), and its length. */
function quantifier(pattern: string, i: number): { length: number; repeats: boolean; brace: boolean; variable: boolean } | undefined {
  const c = pattern[i];
  if (c === "*" || c === "+" || c === "?") {
    // A lazy or possessive suffix belongs to the quantifier.
    const suffix = pattern[i + 1] === "?" || pattern[i + 1] === "+" ? 1 : 0;
    return { length: 1 + suffix, repeats: c !== "?", brace: false, variable: true };
  }
  const m = c === "{" ? /^\{(\d*)(,?)(\d*)\}/.exec(pattern.slice(i, i + 24)) : null;
  if (!m || (m[1] === "" && m[3] === "")) return undefined;
  const min = Number(m[1] || 0);
  const max = m[2] ? (m[3] === "" ? Infinity : Number(m[3])) : min;
  return { length: m[0].length, repeats: max >= 2, brace: true, variable: max !== min };
}

/** Where the body of the group opened at `i` starts; the negated end for (?#...) and (?i) which open no group. */
function groupBodyStart(pattern: string, i: number): number {
  if (pattern[i + 1] !== "?") return i + 1;
  const next = pattern[i + 2];
  if (":=!>~".includes(next)) return i + 3;
  if (next === "<" && (pattern[i + 3] === "=" || pattern[i + 3] === "!")) return i + 4;
  if (next === "<" || (next === "P" && pattern[i + 3] === "<")) return pattern.indexOf(">", i) + 1 || pattern.length;
  if (next === "#") return -(pattern.indexOf(")", i) + 1 || pattern.length);
  let j = i + 2;
  while (/[A-Za-z-]/.test(pattern[j] ?? "")) j++;
  return pattern[j] === ":" ? j + 1 : -(j + 1);
}

/** The index just past the character class opened at `i` (Oniguruma classes nest). */
function endOfClass(pattern: string, i: number): number {
  let j = i + 1;
  if (pattern[j] === "^") j++;
  // A ] first in the class is a literal.
  if (pattern[j] === "]") j++;
  for (let depth = 1; j < pattern.length; j++) {
    if (pattern[j] === "\\") j++;
    else if (pattern[j] === "[") depth++;
    else if (pattern[j] === "]" && --depth === 0) return j + 1;
  }
  return pattern.length;
}

/**
 * Walks a component (normalizer, pre_tokenizer, post_processor, decoder) without recursion, checking its nesting, its
 * patterns and how much it can lengthen a text; `file` and `component` name it in errors.
 */
function checkComponent(root: unknown, file: string, component: string): void {
  const stack: [unknown, number][] = [[root, 1]];
  let expansion = 1;
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    if (depth > MAX_COMPONENT_DEPTH) throw new Error(`${file}: ${component} is nested more than ${MAX_COMPONENT_DEPTH} levels deep`);
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
    if (!isObject(node)) continue;
    const where = `${file}: ${component} ${typeof node.type === "string" ? node.type : "component"}`;
    if (node.type === "Split" || node.type === "Replace") {
      const p = node.pattern;
      if (!isObject(p) || (typeof p.Regex !== "string" && typeof p.String !== "string")) {
        throw new Error(`${where}: pattern must be {"Regex": ...} or {"String": ...}, got ${showValue(p)}`);
      }
      if (typeof p.Regex === "string" && repeatsAmbiguousGroup(p.Regex)) {
        throw new Error(`${where}: pattern ${showValue(p.Regex)} repeats a group that holds a repetition or an ` +
          "alternation (like (a+)+), whose matching can take exponential time");
      }
    }
    // Only text on its way to the model is lengthened; a decoder's Replace works on decoded tokens.
    if (component === "decoder") continue;
    if (node.type === "Replace") {
      const content = typeof node.content === "string" ? node.content.length : 0;
      const p = node.pattern as JsonObject;
      // A regex may match empty text, at every position.
      expansion *= typeof p.String === "string" ? Math.max(1, Math.ceil(content / Math.max(1, p.String.length))) : content + 1;
    } else if (node.type === "Metaspace" && typeof node.replacement === "string") {
      expansion *= Math.max(1, node.replacement.length);
    } else if (node.type === "Prepend" && typeof node.prepend === "string" && node.prepend.length > MAX_PREPEND) {
      throw new Error(`${where}: prepend is ${node.prepend.length} characters long, more than ${MAX_PREPEND}`);
    }
    if (expansion > MAX_EXPANSION) {
      throw new Error(`${where}: its rules could make a text ${expansion} times longer (at most ${MAX_EXPANSION} is taken)`);
    }
  }
}

/** Checks a tokenizer.json before the library reads it; returns it. */
function checkTokenizerJson(json: unknown, file: string): object {
  if (!isObject(json)) throw new Error(`${file}: not a JSON object`);
  if (!isObject(json.model)) throw new Error(`${file}: "model" must be an object`);
  const vocab = Array.isArray(json.model.vocab) ? [] : vocabEntries(json.model.vocab, file);
  checkIds(vocab, checkAddedTokens(json.added_tokens, file), file, file);
  for (const component of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) {
    checkComponent(json[component], file, component);
  }
  return json;
}

/** Checks the fields of tokenizer_config.json that this module and the library read; returns it. */
function checkTokenizerConfig(json: unknown, file: string): Record<string, any> {
  if (!isObject(json)) throw new Error(`${file}: not a JSON object`);
  const type = (key: string, ok: (v: unknown) => boolean, what: string) => {
    const v = json[key];
    if (v !== undefined && v !== null && !ok(v)) throw new Error(`${file}: ${key} must be ${what}, got ${showValue(v)}`);
  };
  type("tokenizer_class", (v) => typeof v === "string", "a string");
  type("additional_special_tokens", Array.isArray, "a list");
  type("chat_template", (v) => typeof v === "string" || Array.isArray(v), "a string or a list of named templates");
  for (const key of ["clean_up_tokenization_spaces", "remove_space", "do_lowercase_and_remove_accent"]) {
    type(key, (v) => typeof v === "boolean", "true or false");
  }
  if (Array.isArray(json.chat_template)) {
    for (const t of json.chat_template) {
      if (!isObject(t) || typeof t.name !== "string" || typeof t.template !== "string") {
        throw new Error(`${file}: chat_template lists ${showValue(t)}, not a {"name", "template"} pair of strings`);
      }
    }
  }
  return json;
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
function qwen2TokenizerJson(vocab: Record<string, number>, merges: [string, string][], addedTokens: AddedTokenJson[]): object {
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
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
