// Mutations of config.json and generation_config.json. A field this engine reads gets a value of another type, an
// extreme value or none; `invalid` follows what the loader must accept for the micro model: its sizes must match
// the tensors, the rest must have the right type and range.
import type { Rng } from "../rng.ts";
import { MICRO_VOCAB } from "../seeds.ts";
import { damageText, hostileValue, paths, setAt, showPath, stringify, withDuplicateKey, type Json } from "./json.ts";

export interface ConfigMutant {
  label: string;
  /** The file changed and its new contents. */
  file: "config.json" | "generation_config.json";
  bytes: Uint8Array | string;
  invalid: boolean;
}

const isEos = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < MICRO_VOCAB;

/** Whether config.json may hold `value` at `key` (undefined: removed), for the micro model. */
function validField(key: string, value: unknown, seed: Record<string, unknown>): boolean | undefined {
  const absent = value === undefined || value === null;
  const positiveNumber = (max: number) => typeof value === "number" && Number.isFinite(value) && value > 0 && value < max;
  switch (key) {
    case "model_type": return value === "qwen2";
    case "hidden_size": case "intermediate_size": case "num_hidden_layers": case "num_attention_heads": case "vocab_size":
    case "num_key_value_heads":
      return value === seed[key];
    case "head_dim": return absent || value === 16;
    case "rope_theta": return absent || positiveNumber(1e30);
    case "rms_norm_eps": return absent || positiveNumber(1);
    case "max_position_embeddings": return absent || (Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 1 << 24);
    // The micro model has no lm_head.weight: it is tied.
    case "tie_word_embeddings": return absent ? false : value === true;
    case "use_sliding_window": return absent || value === false;
    case "hidden_act": return absent || value === "silu";
    case "rope_scaling": return absent;
    case "eos_token_id": return absent || isEos(value) || (Array.isArray(value) && value.every(isEos));
    default: return undefined;
  }
}

export function mutateConfig(rng: Rng, config: Record<string, Json>, generation: Record<string, Json>): ConfigMutant {
  const onGeneration = rng.chance(0.2);
  const file = onGeneration ? "generation_config.json" : "config.json";
  const json = onGeneration ? generation : config;
  const seed = structuredClone(json);
  const ops: (() => ConfigMutant)[] = [
    () => {
      const key = rng.pick(Object.keys(json));
      const remove = rng.chance(0.15);
      const { label, value } = remove ? { label: "removed", value: undefined } : hostileValue(rng);
      setAt(json, [key], value);
      // A raw value such as 1e999 is read back as what JSON.parse makes of it.
      const read = value === undefined ? undefined : JSON.parse(stringify(value));
      const valid = onGeneration ? (key === "eos_token_id" ? validField(key, read, seed) : undefined) : validField(key, read, seed);
      return { label: `${file} ${key} -> ${label}`, file, bytes: stringify(json, 2), invalid: valid === false };
    },
    () => {
      const all = paths(json).filter((p) => p.length > 1);
      const path = all.length > 0 ? rng.pick(all) : ["x"];
      const { label, value } = hostileValue(rng);
      setAt(json, path, value);
      const valid = path[0] === "eos_token_id" ? validField("eos_token_id", JSON.parse(stringify(json.eos_token_id ?? null)), seed) : undefined;
      return { label: `${file} ${showPath(path)} -> ${label}`, file, bytes: stringify(json, 2), invalid: valid === false };
    },
    () => {
      const { label, value } = hostileValue(rng);
      json[`unknown_field_${rng.int(100)}`] = value;
      return { label: `${file} an unknown field -> ${label}`, file, bytes: stringify(json, 2), invalid: false };
    },
    () => {
      const key = rng.pick(Object.keys(json));
      const { label, value } = hostileValue(rng);
      // JSON.parse keeps the later value, which is the seed's.
      return { label: `${file} ${key} given twice (first as ${label})`, file, bytes: withDuplicateKey(json, key, value), invalid: false };
    },
    () => {
      const { label, bytes } = damageText(rng, stringify(json, 2));
      const unjudged = label === "a random byte changed" || label === "a byte-order mark before it";
      return { label: `${file} text: ${label}`, file, bytes, invalid: !unjudged };
    },
    () => {
      const { label, value } = hostileValue(rng);
      const valid = value !== null && typeof value === "object" && !Array.isArray(value) && onGeneration;
      return { label: `${file} replaced by ${label}`, file, bytes: stringify(value), invalid: !valid };
    },
  ];
  return rng.pick(ops)();
}
