// config.json and generation_config.json of the micro model, compared with its tensors.
import { mutateConfig } from "../mutators/config.ts";
import { microModel } from "../seeds.ts";
import { loadModel, modelFiles } from "./model.ts";
import type { FileTarget } from "./types.ts";

export const configTarget: FileTarget = {
  name: "config",
  kind: "files",
  generate(rng, index, { gpuEvery }) {
    const seed = microModel();
    const gpu = gpuEvery > 0 && index % gpuEvery === 0;
    if (index === 0) return { mutation: "none (the seed)", files: modelFiles(seed), invalid: false, gpu };
    const special = index % 7 === 3 ? rng.pick([
      { mutation: "config.json is a directory", spec: { directory: true } as const },
      { mutation: "config.json is a FIFO", spec: { fifo: true } as const },
      { mutation: "config.json links to /dev/zero", spec: { link: "/dev/zero" } },
      { mutation: "config.json links to a missing file", spec: { link: "missing.json" } },
    ]) : undefined;
    if (special) return { mutation: special.mutation, files: modelFiles(seed, { "config.json": special.spec }), invalid: true, gpu };
    const m = mutateConfig(rng, seed.config, seed.generation);
    return { mutation: m.label, files: modelFiles(seed, { [m.file]: m.bytes }), invalid: m.invalid, gpu };
  },
  run: (dir, c) => loadModel(dir, c.gpu === true),
};
