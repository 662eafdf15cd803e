// `r3gpu export-gguf`: a model folder, or a benchmark shape's seeded random weights, as a GGUF file for
// llama.cpp (used by `r3gpu bench --peer llama.cpp`).
import { exportGgufFile, type GgufSource } from "../llamacpp/export-file.ts";
import type { ExportGgufArgs } from "./commands.ts";
import { Progress } from "./progress.ts";

export async function exportGguf({ positionals, flags }: ExportGgufArgs): Promise<number> {
  const { shape, seed, dtype } = flags;
  const source: GgufSource = shape !== undefined ? { shape, seed } : { modelDir: positionals.MODEL_DIR! };
  const out = positionals["OUT.gguf"];
  const bar = new Progress("writing");
  const result = await exportGgufFile(source, out, { dtype, onProgress: (p) => bar.update(p.bytes, p.totalBytes, "B") });
  bar.done();
  for (const w of result.warnings) console.error(`warning: ${w}`);
  console.log(`wrote ${out}: ${result.tensors} tensors, ${(result.bytes / 2 ** 20).toFixed(1)} MiB, matrices ${dtype}`);
  return 0;
}
