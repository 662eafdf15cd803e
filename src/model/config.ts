// Qwen2 configuration: read from HF's config.json (+ generation_config.json), checked, and refused
// clearly where it asks for something this engine does not implement.
import { readJson, showValue, type ModelDir } from "../io/files.ts";

export interface Qwen2Config {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ropeTheta: number;
  rmsNormEps: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  /** Token ids that end generation (config.json and generation_config.json together). */
  eosTokenIds: number[];
}

// Sizes are checked against the tensors before anything is allocated for them; these bounds, far above any
// released Qwen2 model (72B: hidden 8192, 80 layers, 64 heads; 1M-context variants: 1,010,000 positions), keep
// even that comparison and the messages cheap.
const LIMITS = {
  hidden_size: 1 << 16,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1 << 10,
  num_attention_heads: 1 << 10,
  num_key_value_heads: 1 << 10,
  head_dim: 256,
  vocab_size: 1 << 24,
  max_position_embeddings: 1 << 24,
};

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * Reads a checked Qwen2Config. Every field read is type-checked (booleans must be JSON booleans, numbers finite);
 * `source` and `generationSource` name the two files in errors.
 */
export function parseConfig(json: unknown, source = "config.json", generation: unknown = {},
  generationSource = "generation_config.json"): Qwen2Config {
  const fail = (msg: string): never => { throw new Error(`${source}: ${msg}`); };
  if (!isObject(json)) fail("not a JSON object");
  const cfg = json as Json;
  if (!isObject(generation)) throw new Error(`${generationSource}: not a JSON object`);
  const shown = (key: string) => showValue(cfg[key]);
  // JSON null is what transformers writes for an unset field, so it reads as absent.
  const given = (key: string) => cfg[key] !== undefined && cfg[key] !== null;

  if (cfg.model_type !== "qwen2") fail(`model_type ${shown("model_type")} is not supported (only "qwen2")`);
  if (given("rope_scaling")) fail(`rope_scaling ${shown("rope_scaling")} is not supported`);
  const bool = (key: string): boolean => {
    if (!given(key)) return false;
    if (typeof cfg[key] !== "boolean") fail(`${key} must be true or false, got ${shown(key)}`);
    return cfg[key] as boolean;
  };
  if (bool("use_sliding_window")) fail("use_sliding_window true is not supported");
  if (given("hidden_act") && cfg.hidden_act !== "silu") fail(`hidden_act ${shown("hidden_act")} is not supported (only "silu")`);

  const int = (key: keyof typeof LIMITS, fallback?: number): number => {
    const v = given(key) ? cfg[key] : fallback;
    if (!Number.isInteger(v) || (v as number) <= 0) fail(`${key} must be a positive integer, got ${shown(key)}`);
    if ((v as number) > LIMITS[key]) fail(`${key} ${v} is larger than the supported ${LIMITS[key]}`);
    return v as number;
  };
  const num = (key: string, fallback: number, max: number): number => {
    const v = given(key) ? cfg[key] : fallback;
    // JSON.parse reads 1e999 as Infinity.
    if (typeof v !== "number" || !(v > 0) || !(v < max)) fail(`${key} must be a finite number in (0, ${max}), got ${shown(key)}`);
    return v as number;
  };

  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (!given("head_dim") && hiddenSize % numHeads !== 0) {
    fail(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}, and no head_dim is given`);
  }
  const headDim = int("head_dim", hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} must be even for rotary embeddings`);
  if (hiddenSize % 2 !== 0) fail(`hidden_size ${hiddenSize} must be even`);
  const intermediateSize = int("intermediate_size");
  if (intermediateSize % 2 !== 0) fail(`intermediate_size ${intermediateSize} must be even`);
  const vocabSize = int("vocab_size");

  const eos = (from: Json, where: string): number[] => {
    const v = from.eos_token_id;
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new Error(`${where}: eos_token_id ${showValue(v)} must be a token id or a list of them, each from 0 to vocab_size - 1 (${vocabSize - 1})`);
      }
    }
    return list as number[];
  };

  return {
    hiddenSize,
    intermediateSize,
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: num("rope_theta", 10000, 1e30),
    rmsNormEps: num("rms_norm_eps", 1e-6, 1),
    vocabSize,
    tieWordEmbeddings: bool("tie_word_embeddings"),
    maxPositionEmbeddings: int("max_position_embeddings", 32768),
    eosTokenIds: [...new Set([...eos(generation, generationSource), ...eos(cfg, source)])],
  };
}

/**
 * Compares config.json with the tensors the safetensors files hold, before anything is allocated from the config:
 * the number of layers, and every size (vocab_size, hidden_size, heads, head_dim, intermediate_size) through the
 * shapes of the embedding, the LM head and layer 0. Per-layer tensors are checked again as they are uploaded.
 * `where` names the model directory.
 */
export function checkConfigAgainstTensors(cfg: Qwen2Config, tensors: ReadonlyMap<string, { shape: readonly number[] }>,
  where: string): void {
  const layers = new Set<number>();
  let top = -1;
  for (const name of tensors.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (!m) continue;
    const l = Number(m[1]);
    layers.add(l);
    top = Math.max(top, l);
  }
  if (top >= cfg.numLayers) {
    throw new Error(`${where}: the safetensors files hold tensors of layer ${top} ("model.layers.${top}."), ` +
      `but config.json has num_hidden_layers ${cfg.numLayers}`);
  }
  if (layers.size < cfg.numLayers) {
    let missing = 0;
    while (layers.has(missing)) missing++;
    throw new Error(`${where}: config.json has num_hidden_layers ${cfg.numLayers}, but the safetensors files hold ` +
      `${layers.size === 0 ? "no layer tensors" : `no tensor of layer ${missing} ("model.layers.${missing}.")`}`);
  }

  const H = cfg.hiddenSize, D = cfg.headDim;
  const expect = (name: string, shape: number[], fields: string) => {
    const t = tensors.get(name);
    // A missing layer tensor is reported by the loader, with the rest of its checks.
    if (t && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new Error(`${where}: tensor "${name}" has shape [${t.shape}], but config.json implies [${shape}] (${fields})`);
    }
  };
  const vocab = `vocab_size ${cfg.vocabSize}, hidden_size ${H}`;
  if (!tensors.has("model.embed_tokens.weight")) throw new Error(`${where}: the safetensors files hold no "model.embed_tokens.weight"`);
  expect("model.embed_tokens.weight", [cfg.vocabSize, H], vocab);
  if (!cfg.tieWordEmbeddings && !tensors.has("lm_head.weight")) {
    throw new Error(`${where}: config.json has tie_word_embeddings false (or leaves it out), but the safetensors files hold no "lm_head.weight"`);
  }
  if (!cfg.tieWordEmbeddings) expect("lm_head.weight", [cfg.vocabSize, H], vocab);
  const heads = (n: number, key: string) => `${key} ${n} × head_dim ${D}, hidden_size ${H}`;
  expect("model.layers.0.self_attn.q_proj.weight", [cfg.numHeads * D, H], heads(cfg.numHeads, "num_attention_heads"));
  expect("model.layers.0.self_attn.k_proj.weight", [cfg.numKvHeads * D, H], heads(cfg.numKvHeads, "num_key_value_heads"));
  expect("model.layers.0.mlp.gate_proj.weight", [cfg.intermediateSize, H], `intermediate_size ${cfg.intermediateSize}, hidden_size ${H}`);
}
