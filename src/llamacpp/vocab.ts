// The tokenizer as llama.cpp reads it from GGUF ("gpt2" = byte-level BPE): tokens indexed by id, a type
// per token, and merges in rank order. Built from a Hugging Face tokenizer.json, or synthesized for a
// model folder that has no tokenizer files, following llama.cpp's convert_hf_to_gguf.py.
import { readJson, type ModelDir } from "../io/files.ts";
import type { GgufValue } from "./writer.ts";

/** llama.cpp's llama_token_type. */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface GgufVocab {
  tokens: string[];
  types: number[];
  merges: string[];
  bosId?: number;
  eosId?: number;
  padId?: number;
  addBos: boolean;
  chatTemplate?: string;
}

/**
 * GPT-2's byte -> printable character table: bytes that are printable Latin-1 map to themselves, the rest
 * to U+0100 upwards, so every token of a byte-level BPE vocabulary is a printable string without spaces.
 */
export function byteLevelChars(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) chars.push(String.fromCodePoint(printable(b) ? b : next++));
  return chars;
}

function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return undefined;
}

/**
 * Reads tokenizer.json (+ tokenizer_config.json, config.json for fallback special ids). Ids the model's
 * embedding has beyond the tokenizer's (Qwen pads its vocabulary to a multiple of 128) become "[PAD{id}]"
 * tokens of type UNUSED, since llama.cpp requires one token per embedding row.
 */
export async function vocabFromTokenizerJson(dir: ModelDir, vocabSize: number): Promise<GgufVocab> {
  const where = `${dir.name}/tokenizer.json`;
  const json = await readJson(dir, "tokenizer.json");
  const model = json?.model;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || !Array.isArray(model.merges)) {
    throw new Error(`${where}: only BPE tokenizers with a vocab and merges can be exported (model type ${JSON.stringify(model?.type)})`);
  }
  // ByteLevel may sit inside a Sequence, so the whole pre-tokenizer/decoder tree is searched.
  const byteLevel = JSON.stringify([json.pre_tokenizer, json.decoder]).includes('"ByteLevel"');
  if (!byteLevel) throw new Error(`${where}: only byte-level BPE tokenizers (GPT-2/Qwen2 style) can be exported to GGUF "gpt2"`);

  const tokens: (string | undefined)[] = new Array(vocabSize).fill(undefined);
  const types: number[] = new Array(vocabSize).fill(TokenType.NORMAL);
  const put = (id: unknown, text: string, type: number) => {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${where}: token ${JSON.stringify(text)} has invalid id ${id}`);
    if ((id as number) >= vocabSize) {
      throw new Error(`${where}: token ${JSON.stringify(text)} has id ${id}, beyond the model's vocab_size ${vocabSize}`);
    }
    tokens[id as number] = text;
    types[id as number] = type;
  };
  for (const [text, id] of Object.entries(model.vocab)) put(id, text, TokenType.NORMAL);
  // As in convert_hf_to_gguf: "<|...|>" tokens are control tokens even where not marked special (Qwen's
  // <|fim_prefix|> etc.); llama.cpp would otherwise warn and override their type on every load.
  for (const t of json.added_tokens ?? []) {
    const looksSpecial = typeof t.content === "string" && t.content.startsWith("<|") && t.content.endsWith("|>");
    put(t.id, t.content, t.special || looksSpecial ? TokenType.CONTROL : TokenType.USER_DEFINED);
  }
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TokenType.UNUSED;
    }
  }
  // Older files store merges as "a b", newer ones as ["a", "b"]; GGUF wants the former.
  const merges = model.merges.map((m: unknown) => (Array.isArray(m) ? m.join(" ") : String(m)));

  const config = (await dir.exists("tokenizer_config.json")) ? await readJson(dir, "tokenizer_config.json") : {};
  const modelConfig = (await dir.exists("config.json")) ? await readJson(dir, "config.json") : {};
  const ids = new Map(tokens.map((t, id) => [t!, id]));
  // Like convert_hf_to_gguf: the tokenizer's named special tokens first, config.json's ids as the fallback.
  const special = (key: string): number | undefined => {
    const text = tokenText(config[`${key}_token`]);
    const id = text === undefined ? undefined : ids.get(text);
    const fallback = modelConfig[`${key}_token_id`];
    return id ?? (Number.isInteger(fallback) && fallback < vocabSize ? fallback : undefined);
  };
  return {
    tokens: tokens as string[],
    types,
    merges,
    bosId: special("bos"),
    eosId: special("eos"),
    padId: special("pad"),
    addBos: config.add_bos_token === true,
    chatTemplate: typeof config.chat_template === "string" ? config.chat_template : undefined,
  };
}

/**
 * A stand-in byte-level BPE vocabulary of exactly vocabSize tokens, for a model folder without tokenizer
 * files: the 256 byte tokens, then two-byte tokens with their merges (so every id decodes to text), and a
 * control token "<|endoftext|>" at each end-of-sequence id. Ids the pairs cannot fill become UNUSED padding.
 */
export function syntheticVocab(vocabSize: number, eosIds: readonly number[]): GgufVocab {
  if (vocabSize < 256 + eosIds.length) throw new Error(`a synthetic byte-level vocabulary needs at least 256 tokens plus end tokens; vocab_size is ${vocabSize}`);
  const bytes = byteLevelChars();
  const tokens: string[] = [];
  const types: number[] = [];
  const merges: string[] = [];
  const eos = new Set(eosIds);
  let pair = 0;
  for (let id = 0; id < vocabSize; id++) {
    if (eos.has(id)) {
      if (id < 256) throw new Error(`end-of-sequence id ${id} collides with a byte token of the synthetic vocabulary`);
      tokens.push(id === eosIds[0] ? "<|endoftext|>" : `<|endoftext${id}|>`);
      types.push(TokenType.CONTROL);
    } else if (id < 256) {
      tokens.push(bytes[id]);
      types.push(TokenType.NORMAL);
    } else if (pair < 256 * 256) {
      const [a, b] = [bytes[pair >> 8], bytes[pair & 0xff]];
      pair++;
      tokens.push(a + b);
      types.push(TokenType.NORMAL);
      merges.push(`${a} ${b}`);
    } else {
      tokens.push(`[PAD${id}]`);
      types.push(TokenType.UNUSED);
    }
  }
  return { tokens, types, merges, bosId: eosIds[0], eosId: eosIds[0], padId: eosIds[0], addBos: false };
}

/** The tokenizer.* metadata keys of a GGUF file. */
export function vocabMetadata(v: GgufVocab): [string, GgufValue][] {
  const entries: [string, GgufValue][] = [
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: "qwen2" }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: v.tokens }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "int32", value: v.types }],
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", value: v.merges }],
  ];
  const id = (key: string, value: number | undefined) => {
    if (value !== undefined) entries.push([`tokenizer.ggml.${key}`, { type: "uint32", value }]);
  };
  id("bos_token_id", v.bosId);
  id("eos_token_id", v.eosId);
  id("padding_token_id", v.padId);
  entries.push(["tokenizer.ggml.add_bos_token", { type: "bool", value: v.addBos }]);
  if (v.chatTemplate !== undefined) entries.push(["tokenizer.chat_template", { type: "string", value: v.chatTemplate }]);
  return entries;
}
