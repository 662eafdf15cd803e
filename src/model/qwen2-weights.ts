// The weights of a Qwen2 checkpoint, named by its keys (model.layers.{l}.self_attn.q_proj.weight, ...), as typed
// records: what the forward pass builds from, loaded apart from the graph. One table gives every tensor's shape,
// so that loading, the list of required tensors and the config-vs-file checks agree. Projections that read the same
// input are stacked by rows into one matrix at load (q, k and v; gate and up), so that one dispatch computes them.
import type { GpuMatrix } from "../gpu/matrix.ts";
import type { Qwen2Config } from "./config.ts";
import { quantizedDType, type Quantization } from "./quant.ts";
import type { WeightSource } from "./weights.ts";

/** A projection: weight [out, in] and, for q/k/v, a bias [out]. */
export interface Projection {
  weight: GpuMatrix;
  bias?: GPUBuffer;
}

/** One Qwen2DecoderLayer's parameters. */
export interface Qwen2LayerWeights {
  input_layernorm: GPUBuffer;
  /** qkv_proj: q_proj, k_proj and v_proj stacked by rows (and their biases end to end). */
  self_attn: { qkv_proj: Projection; o_proj: Projection };
  post_attention_layernorm: GPUBuffer;
  /** gate_up_proj: gate_proj and up_proj stacked by rows. */
  mlp: { gate_up_proj: Projection; down_proj: Projection };
}

export interface Qwen2Weights {
  embed_tokens: GpuMatrix;
  layers: Qwen2LayerWeights[];
  norm: GPUBuffer;
  /** The embedding matrix itself when tie_word_embeddings is set. */
  lm_head: GpuMatrix;
}

type Shape = [rows: number, cols: number] | [length: number];

/** Every tensor of layer `l` (keys as in the checkpoint) with its shape. */
function layerTensors(cfg: Qwen2Config, l: number): [string, Shape][] {
  const H = cfg.hiddenSize, I = cfg.intermediateSize;
  const q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  const p = `model.layers.${l}.`;
  return [
    [`${p}input_layernorm.weight`, [H]],
    [`${p}self_attn.q_proj.weight`, [q, H]], [`${p}self_attn.q_proj.bias`, [q]],
    [`${p}self_attn.k_proj.weight`, [kv, H]], [`${p}self_attn.k_proj.bias`, [kv]],
    [`${p}self_attn.v_proj.weight`, [kv, H]], [`${p}self_attn.v_proj.bias`, [kv]],
    [`${p}self_attn.o_proj.weight`, [H, q]],
    [`${p}post_attention_layernorm.weight`, [H]],
    [`${p}mlp.gate_proj.weight`, [I, H]],
    [`${p}mlp.up_proj.weight`, [I, H]],
    [`${p}mlp.down_proj.weight`, [H, I]],
  ];
}

function modelTensors(cfg: Qwen2Config): [string, Shape][] {
  return [
    ["model.embed_tokens.weight", [cfg.vocabSize, cfg.hiddenSize]],
    ["model.norm.weight", [cfg.hiddenSize]],
    ...(cfg.tieWordEmbeddings ? [] : [["lm_head.weight", [cfg.vocabSize, cfg.hiddenSize]] as [string, Shape]]),
  ];
}

/** Every tensor a Qwen2 checkpoint must provide for this config, with its shape. */
export function qwen2Tensors(cfg: Qwen2Config): [string, Shape][] {
  return [...modelTensors(cfg), ...Array.from({ length: cfg.numLayers }, (_, l) => layerTensors(cfg, l)).flat()];
}

export async function loadLayerWeights(w: WeightSource, cfg: Qwen2Config, l: number, quant?: Quantization): Promise<Qwen2LayerWeights> {
  const shapes = new Map(layerTensors(cfg, l));
  const p = `model.layers.${l}.`;
  const part = (key: string) => ({ name: p + key, size: shapes.get(p + key)![0] });
  const vector = (...keys: string[]) => w.vector(p + keys.join("+"), keys.map(part));
  // Stacked projections: one matrix of the tensors' rows in order, one bias of their biases end to end.
  const projection = async (names: string[], bias: boolean): Promise<Projection> => ({
    weight: await w.matrix(p + names.join("+"), names.map((n) => part(`${n}.weight`)), shapes.get(p + `${names[0]}.weight`)![1]!,
      quant && quantizedDType(quant, names[0].startsWith("mlp.") ? "mlp" : "attention", { index: l, count: cfg.numLayers })),
    bias: bias ? await vector(...names.map((n) => `${n}.bias`)) : undefined,
  });
  return {
    input_layernorm: await vector("input_layernorm.weight"),
    self_attn: {
      qkv_proj: await projection(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], true),
      o_proj: await projection(["self_attn.o_proj"], false),
    },
    post_attention_layernorm: await vector("post_attention_layernorm.weight"),
    mlp: {
      gate_up_proj: await projection(["mlp.gate_proj", "mlp.up_proj"], false),
      down_proj: await projection(["mlp.down_proj"], false),
    },
  };
}

/** The weights of a Qwen2 checkpoint; `quant`: its matrices quantized on the GPU (src/model/quant.ts says which dtype each gets). */
export async function loadQwen2Weights(w: WeightSource, cfg: Qwen2Config, quant?: Quantization): Promise<Qwen2Weights> {
  const H = cfg.hiddenSize;
  const table = (name: string) => ({ name, size: cfg.vocabSize });
  const embedDType = quant && quantizedDType(quant, "embedding");
  const headDType = quant && quantizedDType(quant, "lm_head");
  const embed_tokens = await w.matrix("model.embed_tokens.weight", [table("model.embed_tokens.weight")], H, embedDType);
  const layers: Qwen2LayerWeights[] = [];
  for (let l = 0; l < cfg.numLayers; l++) layers.push(await loadLayerWeights(w, cfg, l, quant));
  const norm = await w.vector("model.norm.weight", [{ name: "model.norm.weight", size: H }]);
  // A tied table whose two uses get different dtypes is loaded twice, the second time as the LM head.
  const lm_head = cfg.tieWordEmbeddings && headDType === embedDType ? embed_tokens
    : cfg.tieWordEmbeddings ? await w.matrix("lm_head (tied: model.embed_tokens.weight)", [table("model.embed_tokens.weight")], H, headDType)
    : await w.matrix("lm_head.weight", [table("lm_head.weight")], H, headDType);
  await w.finish();
  return { embed_tokens, layers, norm, lm_head };
}
