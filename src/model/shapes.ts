// Published Qwen2.5 model shapes (the models' config.json files), for benchmarks and exports of seeded
// random weights at real sizes. One table, so that the bench and `export-gguf --shape` agree.
import type { Qwen2Config } from "./config.ts";

const QWEN25_COMMON = {
  vocabSize: 151936,
  ropeTheta: 1_000_000,
  rmsNormEps: 1e-6,
  tieWordEmbeddings: true,
  maxPositionEmbeddings: 32768,
  eosTokenIds: [151643],
};

export const QWEN25_SHAPES = {
  "qwen2.5-0.5b": { ...QWEN25_COMMON, hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2, headDim: 64 },
  "qwen2.5-1.5b": { ...QWEN25_COMMON, hiddenSize: 1536, intermediateSize: 8960, numLayers: 28, numHeads: 12, numKvHeads: 2, headDim: 128 },
} satisfies Record<string, Qwen2Config>;

export type Qwen25Shape = keyof typeof QWEN25_SHAPES;

export function isQwen25Shape(name: string): name is Qwen25Shape {
  return Object.hasOwn(QWEN25_SHAPES, name);
}
