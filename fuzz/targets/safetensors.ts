// Safetensors files: a mutated model.safetensors beside the micro model's config.json.
import { mutateSafetensors } from "../mutators/safetensors.ts";
import { microModel } from "../seeds.ts";
import { loadModel, modelFiles } from "./model.ts";
import type { FileTarget } from "./types.ts";

export const safetensorsTarget: FileTarget = {
  name: "safetensors",
  kind: "files",
  generate(rng, index, { gpuEvery }) {
    const seed = microModel();
    const gpu = gpuEvery > 0 && index % gpuEvery === 0;
    if (index === 0) return { mutation: "none (the seed)", files: modelFiles(seed), invalid: false, gpu };
    const m = mutateSafetensors(rng, seed);
    return { mutation: m.label, files: modelFiles(seed, { "model.safetensors": m.bytes }), invalid: m.invalid, gpu };
  },
  run: (dir, c) => loadModel(dir, c.gpu === true),
};
