// Qwen2 models as GGUF files for llama.cpp (architecture "qwen2"): hyperparameters and tokenizer as
// metadata, tensors under llama.cpp's names. Weights come from a safetensors model folder or are the
// seeded random weights of a benchmark shape (the same values Qwen2Model.random puts on the GPU).
// Matrices are written in the chosen dtype; vectors (norms, biases) always as F32, as llama.cpp's converter does.
// q8_0 and q4_0 are r3gpu's --quant q8 and q4 (src/model/quant.ts): every matrix Q8_0, or the MLP's Q4_0 and the
// rest Q8_0, with the same values, so that llama.cpp beside r3gpu runs the same quantized model.
import type { ModelDir } from "../io/files.ts";
import { checkConfigAgainstTensors, type Qwen2Config } from "../model/config.ts";
import { openModelFolder } from "../model/folder.ts";
import { quantizedDType, type LayerPosition, type MatrixRole, type WeightMode } from "../model/quant.ts";
import { randomMatrixBf16, randomVectorF32 } from "../model/random-host.ts";
import { openModelWeights, streamTensor, type TensorInfo } from "../model/safetensors.ts";
import { convertWeights, type ConvertStats, type FloatDType } from "./convert.ts";
import { syntheticVocab, vocabFromTokenizerJson, vocabMetadata, type GgufVocab } from "./vocab.ts";
import { writeGguf, type ByteSink, type GgmlTypeName, type GgufProgress, type GgufTensor, type GgufValue } from "./writer.ts";

export type GgufDType = "bf16" | "f16" | "f32" | "q8_0" | "q4_0";
export const GGUF_DTYPES: GgufDType[] = ["bf16", "f16", "f32", "q8_0", "q4_0"];

/** The GGUF dtype of r3gpu's weights in a mode. */
export const GGUF_DTYPE_OF: Record<WeightMode, GgufDType> = { bf16: "f16", q8: "q8_0", q4: "q4_0" };

// llama_ftype of a file by its (most common) matrix type.
const FILE_TYPE: Record<GgmlTypeName, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32 };
const CHUNK_BYTES = 8 * 1024 * 1024;

export interface ExportOptions {
  /** Dtype of the weight matrices (default f16). */
  dtype?: GgufDType;
  /** general.name */
  name?: string;
  onProgress?: (p: GgufProgress) => void;
}

export interface ExportResult {
  bytes: number;
  tensors: number;
  /** Things the user should know about the file (a synthetic tokenizer, values that overflowed F16). */
  warnings: string[];
}

/** Streams one tensor's values, converted to `to`, in bounded chunks. */
type HostTensor = (to: GgmlTypeName, emit: (bytes: Uint8Array) => Promise<void>, stats: ConvertStats) => Promise<void>;

interface HostWeights {
  tensor(hfName: string, shape: number[]): HostTensor;
}

/** HF tensor name and row-major shape -> GGUF tensor name, for every tensor llama.cpp's qwen2 graph reads; `layer`: the layers' tensors'. */
/** `separateHead`: an output.weight even for a tied model (read from its table), when the head's type differs from the table's. */
function tensorMap(cfg: Qwen2Config, separateHead: boolean): { hf: string; gguf: string; shape: number[]; layer?: number }[] {
  const H = cfg.hiddenSize, I = cfg.intermediateSize, V = cfg.vocabSize;
  const qDim = cfg.numHeads * cfg.headDim, kvDim = cfg.numKvHeads * cfg.headDim;
  const out: { hf: string; gguf: string; shape: number[]; layer?: number }[] = [{ hf: "model.embed_tokens.weight", gguf: "token_embd.weight", shape: [V, H] }];
  for (let l = 0; l < cfg.numLayers; l++) {
    const hf = (n: string) => `model.layers.${l}.${n}`;
    const gg = (n: string) => `blk.${l}.${n}`;
    out.push(...[
      { hf: hf("input_layernorm.weight"), gguf: gg("attn_norm.weight"), shape: [H] },
      { hf: hf("self_attn.q_proj.weight"), gguf: gg("attn_q.weight"), shape: [qDim, H] },
      { hf: hf("self_attn.q_proj.bias"), gguf: gg("attn_q.bias"), shape: [qDim] },
      { hf: hf("self_attn.k_proj.weight"), gguf: gg("attn_k.weight"), shape: [kvDim, H] },
      { hf: hf("self_attn.k_proj.bias"), gguf: gg("attn_k.bias"), shape: [kvDim] },
      { hf: hf("self_attn.v_proj.weight"), gguf: gg("attn_v.weight"), shape: [kvDim, H] },
      { hf: hf("self_attn.v_proj.bias"), gguf: gg("attn_v.bias"), shape: [kvDim] },
      { hf: hf("self_attn.o_proj.weight"), gguf: gg("attn_output.weight"), shape: [H, qDim] },
      { hf: hf("post_attention_layernorm.weight"), gguf: gg("ffn_norm.weight"), shape: [H] },
      { hf: hf("mlp.gate_proj.weight"), gguf: gg("ffn_gate.weight"), shape: [I, H] },
      { hf: hf("mlp.up_proj.weight"), gguf: gg("ffn_up.weight"), shape: [I, H] },
      { hf: hf("mlp.down_proj.weight"), gguf: gg("ffn_down.weight"), shape: [H, I] },
    ].map((t) => ({ ...t, layer: l })));
  }
  out.push({ hf: "model.norm.weight", gguf: "output_norm.weight", shape: [H] });
  // Tied models have no output.weight unless its type differs; without one, llama.cpp uses token_embd.weight.
  if (!cfg.tieWordEmbeddings || separateHead) {
    out.push({ hf: cfg.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", gguf: "output.weight", shape: [V, H] });
  }
  return out;
}

function modelMetadata(cfg: Qwen2Config, name: string, matrixType: GgmlTypeName): [string, GgufValue][] {
  const u32 = (value: number): GgufValue => ({ type: "uint32", value });
  const f32 = (value: number): GgufValue => ({ type: "float32", value });
  return [
    ["general.architecture", { type: "string", value: "qwen2" }],
    ["general.type", { type: "string", value: "model" }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(FILE_TYPE[matrixType])],
    ["general.alignment", u32(32)],
    ["qwen2.context_length", u32(cfg.maxPositionEmbeddings)],
    ["qwen2.embedding_length", u32(cfg.hiddenSize)],
    ["qwen2.block_count", u32(cfg.numLayers)],
    ["qwen2.feed_forward_length", u32(cfg.intermediateSize)],
    ["qwen2.attention.head_count", u32(cfg.numHeads)],
    ["qwen2.attention.head_count_kv", u32(cfg.numKvHeads)],
    ["qwen2.attention.key_length", u32(cfg.headDim)],
    ["qwen2.attention.value_length", u32(cfg.headDim)],
    ["qwen2.rope.freq_base", f32(cfg.ropeTheta)],
    ["qwen2.attention.layer_norm_rms_epsilon", f32(cfg.rmsNormEps)],
  ];
}

async function writeQwen2Gguf(sink: ByteSink, cfg: Qwen2Config, vocab: GgufVocab, weights: HostWeights,
  opts: ExportOptions, name: string, warnings: string[]): Promise<ExportResult> {
  const matrixType = (opts.dtype ?? "f16").toUpperCase() as GgmlTypeName;
  const metadata = new Map<string, GgufValue>([...modelMetadata(cfg, opts.name ?? name, matrixType), ...vocabMetadata(vocab)]);
  const stats: ConvertStats = { overflows: 0 };
  const separateHead = matrixTypeOf(matrixType, "lm_head") !== matrixTypeOf(matrixType, "embedding");
  const tensors: GgufTensor[] = tensorMap(cfg, separateHead).map(({ hf, gguf, shape, layer }) => {
    const type: GgmlTypeName = shape.length === 1 ? "F32"
      : matrixTypeOf(matrixType, roleOf(gguf), layer === undefined ? undefined : { index: layer, count: cfg.numLayers });
    const produce = weights.tensor(hf, shape);
    return {
      name: gguf, type, dims: [...shape].reverse(),
      produce: (emit) => produce(type, emit, stats).catch((e: Error) => { throw new Error(`${hf}: ${e.message}`); }),
    };
  });
  const bytes = await writeGguf(sink, metadata, tensors, opts.onProgress);
  if (stats.overflows > 0) warnings.push(`${stats.overflows} weight values exceed the ${matrixType} range and were written as infinity`);
  return { bytes, tensors: tensors.length, warnings };
}

const roleOf = (gguf: string): MatrixRole =>
  gguf.includes(".ffn_") ? "mlp" : gguf.includes(".attn_") ? "attention" : gguf === "output.weight" ? "lm_head" : "embedding";

/**
 * The type of one matrix. q8_0 and q4_0 files hold what r3gpu's q8 and q4 modes hold (src/model/quant.ts): Q8_0,
 * Q4_0 where those quantize, and F16 (the file type of the bf16 comparisons) where q8 keeps the stored dtype.
 */
function matrixTypeOf(fileType: GgmlTypeName, role: MatrixRole, layer?: LayerPosition): GgmlTypeName {
  const mode = fileType === "Q8_0" ? "q8" : fileType === "Q4_0" ? "q4" : undefined;
  if (!mode) return fileType;
  const q = quantizedDType(mode, role, layer);
  return q === "Q4" ? "Q4_0" : q === "Q8" ? "Q8_0" : "F16";
}

class SafetensorsHostWeights implements HostWeights {
  constructor(private tensors: Map<string, TensorInfo>, private where: string) {}

  tensor(name: string, shape: number[]): HostTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.where}: tensor "${name}" is missing from the safetensors files`);
    if (t.dtype === "I32") throw new Error(`${t.source.name}: tensor "${name}" has dtype I32; weights must be BF16, F16 or F32`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${t.source.name}: tensor "${name}" has shape [${t.shape}], but config.json implies [${shape}]`);
    }
    const from: FloatDType = t.dtype;
    return (to, emit, stats) => streamTensor(t, (bytes) => emit(convertWeights(bytes, from, to, stats)), CHUNK_BYTES);
  }
}

/** Exports a Hugging Face Qwen2 folder (config.json, safetensors, tokenizer.json if present). */
export async function exportModelDir(dir: ModelDir, sink: ByteSink, opts: ExportOptions = {}): Promise<ExportResult> {
  const cfg = (await openModelFolder(dir)).config;
  const warnings: string[] = [];
  let vocab: GgufVocab;
  if (await dir.exists("tokenizer.json")) {
    vocab = await vocabFromTokenizerJson(dir, cfg.vocabSize);
  } else {
    vocab = syntheticVocab(cfg.vocabSize, cfg.eosTokenIds);
    warnings.push(`${dir.name} has no tokenizer.json: wrote a synthetic byte-level vocabulary of ${cfg.vocabSize} tokens ` +
      "(token ids are right, text is not)");
  }
  const tensors = await openModelWeights(dir);
  try {
    checkConfigAgainstTensors(cfg, tensors, dir.name);
    const name = dir.name.split(/[\\/]/).filter(Boolean).pop() ?? "qwen2";
    return await writeQwen2Gguf(sink, cfg, vocab, new SafetensorsHostWeights(tensors, dir.name), opts, name, warnings);
  } finally {
    await Promise.all([...new Set([...tensors.values()].map((t) => t.source))].map((s) => s.close()));
  }
}

class RandomHostWeights implements HostWeights {
  constructor(private seed: number) {}

  tensor(name: string, shape: number[]): HostTensor {
    if (shape.length === 1) {
      return async (to, emit, stats) => {
        const v = randomVectorF32(name, this.seed, shape[0]);
        await emit(convertWeights(new Uint8Array(v.buffer), "F32", to, stats));
      };
    }
    const [rows, cols] = shape;
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / (2 * cols)));
    return async (to, emit, stats) => {
      for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
        const bits = randomMatrixBf16(name, this.seed, cols, row0, Math.min(rowsPerChunk, rows - row0));
        await emit(convertWeights(new Uint8Array(bits.buffer), "BF16", to, stats));
      }
    };
  }
}

/**
 * Exports a model of shape `cfg` holding the seeded random weights Qwen2Model.random(device, cfg, seed)
 * generates, with the tokenizer of `tokenizerDir` (its tokenizer.json). Matrices are BF16 on the GPU; F16
 * holds them exactly except magnitudes below 2^-17, where F16 subnormals are coarser than BF16.
 */
export async function exportRandom(cfg: Qwen2Config, seed: number, tokenizerDir: ModelDir, sink: ByteSink,
  opts: ExportOptions & { name: string }): Promise<ExportResult> {
  const vocab = await vocabFromTokenizerJson(tokenizerDir, cfg.vocabSize);
  return writeQwen2Gguf(sink, cfg, vocab, new RandomHostWeights(seed), opts, opts.name, []);
}
