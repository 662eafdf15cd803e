// `r3gpu export-gguf`: a model folder, or a benchmark shape's seeded random weights, as a GGUF file for
// llama.cpp (used by `r3gpu bench --peer llama.cpp`).
import { parseArgs } from "node:util";
import { exportGgufFile, type GgufSource } from "../llamacpp/export-file.ts";
import { GGUF_DTYPES, type GgufDType } from "../llamacpp/export.ts";
import { isQwen25Shape, QWEN25_SHAPES } from "../model/shapes.ts";
import { Progress } from "./progress.ts";
import { UsageError } from "./args.ts";

export async function exportGguf(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { dtype: { type: "string", default: "f16" }, shape: { type: "string" }, seed: { type: "string", default: "1" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  const dtype = values.dtype as GgufDType;
  if (!GGUF_DTYPES.includes(dtype)) throw new UsageError(`--dtype must be one of ${GGUF_DTYPES.join(", ")}, got "${values.dtype}"`);

  let source: GgufSource;
  if (values.shape !== undefined) {
    if (!isQwen25Shape(values.shape)) throw new UsageError(`--shape must be one of ${Object.keys(QWEN25_SHAPES).join(", ")}, got "${values.shape}"`);
    const seed = Number(values.seed);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new UsageError(`--seed must be an integer in [0, 2^32), got "${values.seed}"`);
    if (positionals.length !== 1) throw new UsageError(`export-gguf --shape takes one positional argument, OUT.gguf (got ${positionals.length})`);
    source = { shape: values.shape, seed };
  } else {
    if (positionals.length !== 2) throw new UsageError(`export-gguf takes MODEL_DIR and OUT.gguf (got ${positionals.length} positional arguments)`);
    source = { modelDir: positionals[0] };
  }
  const out = positionals[positionals.length - 1];

  const bar = new Progress("writing");
  const result = await exportGgufFile(source, out, { dtype, onProgress: (p) => bar.update(p.bytes, p.totalBytes, "B") });
  bar.done();
  for (const w of result.warnings) console.error(`warning: ${w}`);
  console.log(`wrote ${out}: ${result.tensors} tensors, ${(result.bytes / 2 ** 20).toFixed(1)} MiB, matrices ${dtype}`);
  return 0;
}
