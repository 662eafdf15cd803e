// Qwen2 configuration: read from HF's config.json (+ generation_config.json), checked, and refused
// clearly where it asks for something this engine does not implement.
import { readJson, type ModelDir } from "../io/files.ts";

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

function ids(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

export function parseConfig(json: any, source = "config.json", generation: any = {}): Qwen2Config {
  const fail = (msg: string): never => { throw new Error(`${source}: ${msg}`); };
  if (typeof json !== "object" || json === null) fail("not a JSON object");
  if (json.model_type !== "qwen2") fail(`model_type "${json.model_type}" is not supported (only "qwen2")`);
  if (json.rope_scaling != null) fail(`rope_scaling ${JSON.stringify(json.rope_scaling)} is not supported`);
  if (json.use_sliding_window === true) fail("use_sliding_window true is not supported");
  if ((json.hidden_act ?? "silu") !== "silu") fail(`hidden_act "${json.hidden_act}" is not supported (only "silu")`);

  const int = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (!Number.isInteger(v) || v <= 0) fail(`${key} must be a positive integer, got ${JSON.stringify(json[key])}`);
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) fail(`${key} must be a positive number, got ${JSON.stringify(json[key])}`);
    return v;
  };

  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  const headDim = int("head_dim", hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} must be even for rotary embeddings`);
  if (headDim > 256) fail(`head_dim ${headDim} is larger than the supported 256`);
  if (hiddenSize % 2 !== 0) fail(`hidden_size ${hiddenSize} must be even`);
  const intermediateSize = int("intermediate_size");
  if (intermediateSize % 2 !== 0) fail(`intermediate_size ${intermediateSize} must be even`);

  return {
    hiddenSize,
    intermediateSize,
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: num("rope_theta", 10000),
    rmsNormEps: num("rms_norm_eps", 1e-6),
    vocabSize: int("vocab_size"),
    tieWordEmbeddings: json.tie_word_embeddings ?? false,
    maxPositionEmbeddings: int("max_position_embeddings", 32768),
    eosTokenIds: [...new Set([...ids(generation.eos_token_id), ...ids(json.eos_token_id)])],
  };
}

export async function loadConfig(dir: ModelDir): Promise<Qwen2Config> {
  if (!(await dir.exists("config.json"))) throw new Error(`${dir.name}: no config.json (not a Hugging Face model directory?)`);
  const json = await readJson(dir, "config.json");
  const generation = (await dir.exists("generation_config.json")) ? await readJson(dir, "generation_config.json") : {};
  return parseConfig(json, `${dir.name}/config.json`, generation);
}
