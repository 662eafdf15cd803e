// Mutations of tokenizer.json and tokenizer_config.json: ids, tokens, pre-tokenizer patterns, component nesting,
// text-lengthening rules, chat templates, and random values anywhere. `invalid` is set where the files must be
// refused: by the format, for safety (patterns that backtrack exponentially, templates that do not end), or because
// an id lies past the micro model's 544-row embedding.
import type { Rng } from "../rng.ts";
import { MICRO_VOCAB } from "../seeds.ts";
import { damageText, hostileValue, paths, raw, setAt, showPath, stringify, type Json } from "./json.ts";

export interface TokenizerMutant {
  label: string;
  tokenizer?: string | Uint8Array;
  config?: string | Uint8Array;
  /** A chat_template.jinja file, which takes precedence over the config's template. */
  templateFile?: string;
  invalid: boolean;
}

// Shapes that backtrack exponentially (or, for the last, nest a repetition in Oniguruma's reading).
export const CATASTROPHIC_PATTERNS = ["(a+)+$", "(a|aa)+$", "(\\s*\\w+)*$", "(x+x+)+y", "(?:\\p{L}+\\s?)*$", "(?:a+){2,}b", "\\p{L}{1,3}+$"];
// Pre-tokenizer patterns of published tokenizers (GPT-2, Llama 3, GPT-4o), which must load.
export const PUBLISHED_PATTERNS = [
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];

// Templates that must be refused: they never end, build unbounded text, recurse, or do not parse.
export const HOSTILE_TEMPLATES: [string, string][] = [
  ["range(10**7)", "{% for i in range(10**7) %}x{% endfor %}"],
  ["three nested loops of 1000", "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}"],
  ["a string doubled 40 times", "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}"],
  ["a list doubled 40 times", "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}"],
  ["a macro that calls itself", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"],
  ["indent(500000000)", "{{ 'a\\nb' | indent(500000000) }}"],
  ["tojson(indent=100000000)", "{{ messages | tojson(indent=100000000) }}"],
  ["a syntax error", "{% for m in messages %}{{ m.content }"],
  ["an unclosed block", "{% if messages %}x"],
  ["raise_exception", "{{ raise_exception('this template refuses every conversation') }}"],
  ["parentheses nested 100000 deep", `{{ ${"(".repeat(100_000)}1${")".repeat(100_000)} }}`],
];
// Templates that must render.
const BENIGN_TEMPLATES: [string, string][] = [
  ["a plain loop", "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"],
  ["range(100)", "{% for i in range(100) %}{{ i }}{% endfor %}{{ messages[0].content }}"],
  ["strftime_now", "{{ strftime_now('%Y-%m-%d') }}{{ messages | length }}"],
];

/** ByteLevel inside `depth` Sequences, as raw text (JSON.stringify recurses). */
function nestedSequence(depth: number): string {
  const leaf = JSON.stringify({ type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false });
  return raw('{"type":"Sequence","pretokenizers":['.repeat(depth) + leaf + "]}".repeat(depth));
}

export function mutateTokenizer(rng: Rng, tokenizer: Record<string, any>, config: Record<string, any>): TokenizerMutant {
  const tok = (label: string, invalid: boolean): TokenizerMutant => ({ label, tokenizer: stringify(tokenizer), invalid });
  const cfg = (label: string, invalid: boolean): TokenizerMutant => ({ label, config: stringify(config, 2), invalid });
  const vocabToken = rng.pick(Object.keys(tokenizer.model.vocab));
  const added = rng.int(tokenizer.added_tokens.length);
  const split = tokenizer.pre_tokenizer.pretokenizers[0];
  const ops: (() => TokenizerMutant)[] = [
    () => {
      const id = rng.pick<Json>([2 ** 31, 1e9, -1, 1.5, "5", null, MICRO_VOCAB + 100]);
      tokenizer.model.vocab[vocabToken] = id;
      return tok(`vocabulary id of ${JSON.stringify(vocabToken)} -> ${JSON.stringify(id)}`, true);
    },
    () => {
      const id = rng.pick<Json>([1e9, 2 ** 31, -1, "x", null, 600, MICRO_VOCAB - 1]);
      tokenizer.added_tokens[added].id = id;
      // An id within the embedding, shared with another token, is odd but not refused.
      return tok(`added token ${added} id -> ${JSON.stringify(id)}`, id !== MICRO_VOCAB - 1);
    },
    () => {
      const { label, value } = hostileValue(rng);
      tokenizer.added_tokens[added].content = value;
      const valid = typeof value === "string" && value.length <= 1024;
      return tok(`added token ${added} content -> ${label}`, !valid);
    },
    () => {
      const pattern = rng.pick(CATASTROPHIC_PATTERNS);
      split.pattern = { Regex: pattern };
      return tok(`pre-tokenizer pattern -> ${pattern}`, true);
    },
    () => {
      const pattern = rng.pick(PUBLISHED_PATTERNS);
      split.pattern = { Regex: pattern };
      return tok(`pre-tokenizer pattern -> a published one (${pattern.slice(0, 24)}...)`, false);
    },
    () => {
      const pattern = rng.pick(["([", "(?<", "\\p{NoSuchProperty}", "[z-a]", "a{2,1}"]);
      split.pattern = { Regex: pattern };
      return tok(`pre-tokenizer pattern -> ${pattern} (not a regex)`, true);
    },
    () => {
      split.pattern = rng.pick<Json>([{}, { Nope: "x" }, "\\s+", null]);
      return tok(`pre-tokenizer pattern -> ${JSON.stringify(split.pattern)}`, true);
    },
    () => {
      const depth = rng.pick([5000, 40, 10]);
      tokenizer.pre_tokenizer.pretokenizers[1] = nestedSequence(depth);
      // Each Sequence is two levels of JSON (the object and its list), under the outer Sequence's two: 32 levels in all.
      return tok(`ByteLevel inside ${depth} nested Sequences`, depth > 14);
    },
    () => {
      const content = rng.pick(["x".repeat(1000), "ab", "▁"]);
      const count = rng.pick([1, 5]);
      const replace = { type: "Replace", pattern: { Regex: "." }, content };
      tokenizer.normalizer = { type: "Sequence", normalizers: [{ type: "NFC" }, ...new Array(count).fill(replace)] };
      return tok(`${count} Replace normalizers of every character by ${content.length} characters`, (content.length + 1) ** count > 16);
    },
    () => {
      const [component, key] = rng.pick([["normalizer", "type"], ["decoder", "type"], ["post_processor", "type"], ["model", "type"]] as const);
      tokenizer[component] = { ...tokenizer[component], [key]: "NoSuchComponent" };
      // An unknown model type with a vocabulary falls back to a working model in the library.
      return tok(`${component} type -> "NoSuchComponent"`, component !== "model");
    },
    () => {
      const key = rng.pick(["model", "added_tokens"]);
      delete tokenizer[key];
      return tok(`${key} removed`, true);
    },
    () => {
      const { label, value } = hostileValue(rng);
      tokenizer.model.merges = value;
      return tok(`merges -> ${label}`, !(Array.isArray(value) && value.length === 0));
    },
    () => {
      const all = paths(tokenizer, 3000);
      const path = rng.pick(all);
      const { label, value } = hostileValue(rng);
      setAt(tokenizer, path, value);
      return tok(`tokenizer.json ${showPath(path)} -> ${label}`, false);
    },
    () => {
      const [label, template] = rng.pick(HOSTILE_TEMPLATES);
      config.chat_template = template;
      return cfg(`chat_template -> ${label}`, true);
    },
    () => {
      const [label, template] = rng.pick(HOSTILE_TEMPLATES);
      return { label: `chat_template.jinja -> ${label}`, templateFile: template, invalid: true };
    },
    () => {
      const [label, template] = rng.pick(BENIGN_TEMPLATES);
      config.chat_template = template;
      return cfg(`chat_template -> ${label}`, false);
    },
    () => {
      const key = rng.pick(["chat_template", "additional_special_tokens", "clean_up_tokenization_spaces", "eos_token", "tokenizer_class", "bos_token"]);
      const { label, value } = hostileValue(rng);
      config[key] = value;
      const ok: Record<string, (v: Json) => boolean> = {
        chat_template: (v) => typeof v === "string" || v === null || (Array.isArray(v) && v.length === 0),
        additional_special_tokens: (v) => Array.isArray(v) || v === null,
        clean_up_tokenization_spaces: (v) => typeof v === "boolean" || v === null,
        tokenizer_class: (v) => typeof v === "string" || v === null,
      };
      // A template that is an empty string or a bare word renders as text; the others may not.
      const valid = key === "chat_template" && typeof value === "string" && !value.includes("{") ? true : ok[key]?.(value);
      return cfg(`tokenizer_config.json ${key} -> ${label}`, valid === false);
    },
    () => {
      const { label, bytes } = damageText(rng, stringify(tokenizer));
      const unjudged = label === "a random byte changed" || label === "a byte-order mark before it";
      return { label: `tokenizer.json text: ${label}`, tokenizer: bytes, invalid: !unjudged };
    },
    () => {
      const { label, bytes } = damageText(rng, stringify(config, 2));
      const unjudged = label === "a random byte changed" || label === "a byte-order mark before it";
      return { label: `tokenizer_config.json text: ${label}`, config: bytes, invalid: !unjudged };
    },
  ];
  return rng.pick(ops)();
}
