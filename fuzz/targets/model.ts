// What the model targets run in the child: the loader's checks (config.json, the safetensors headers, the two
// compared), and for some cases the whole load onto the GPU with a token through the model.
import { nodeModelDir } from "../../src/io/node.ts";
import { checkConfigAgainstTensors } from "../../src/model/config.ts";
import { openModelFolder } from "../../src/model/folder.ts";
import { openModelWeights } from "../../src/model/safetensors.ts";
import { safetensorsBytes, type ModelSeed } from "../seeds.ts";
import { stringify } from "../mutators/json.ts";
import type { FileSpec } from "./types.ts";

export async function loadModel(dir: string, gpu: boolean): Promise<void> {
  const modelDir = nodeModelDir(dir);
  if (gpu) {
    // Imported here: the GPU module and the model's kernels take a while to load, and most cases never reach them.
    const [{ nodeGpu }, { Qwen2Model }] = await Promise.all([import("../../src/gpu/node.ts"), import("../../src/model/qwen2.ts")]);
    const { device } = await nodeGpu();
    const model = await Qwen2Model.load(device, modelDir, { maxSeqLen: 8 });
    await model.prefill([1, 2, 3]);
    return;
  }
  const cfg = (await openModelFolder(modelDir)).config;
  const tensors = await openModelWeights(modelDir);
  try {
    checkConfigAgainstTensors(cfg, tensors, modelDir.name);
  } finally {
    await Promise.all([...new Set([...tensors.values()].map((t) => t.source))].map((s) => s.close()));
  }
}

/** The files of a model seed, each replaceable. */
export function modelFiles(seed: ModelSeed, replace: Record<string, FileSpec> = {}): Record<string, FileSpec> {
  return {
    "config.json": stringify(seed.config, 2),
    "generation_config.json": stringify(seed.generation, 2),
    "model.safetensors": safetensorsBytes(seed.header, seed.data),
    ...replace,
  };
}
