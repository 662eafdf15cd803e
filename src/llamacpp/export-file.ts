// GGUF export to a file under Node. The file is written under a temporary name beside the target and
// renamed when complete, so an interrupted export never leaves a truncated OUT.gguf that looks valid.
import { open, rename, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { nodeModelDir } from "../io/node.ts";
import { QWEN25_SHAPES, type Qwen25Shape } from "../model/shapes.ts";
import { exportModelDir, exportRandom, type ExportOptions, type ExportResult } from "./export.ts";
import type { ByteSink } from "./writer.ts";

// Compiled to dist/src/llamacpp/, three levels below the package root that holds models/.
export const QWEN25_TOKENIZER_DIR = fileURLToPath(new URL("../../../models/tiny-qwen2/", import.meta.url));

const BUFFER_BYTES = 4 * 1024 * 1024;

/** Either a Hugging Face model folder, or a benchmark shape with the seed of its random weights. */
export type GgufSource = { modelDir: string } | { shape: Qwen25Shape; seed: number; tokenizerDir?: string };

export async function exportGgufFile(source: GgufSource, outPath: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const tmp = `${outPath}.partial-${process.pid}`;
  const handle = await open(tmp, "w");
  // Small writes (padding, header pieces) are gathered so the file sees few, large writes.
  const buffer = new Uint8Array(BUFFER_BYTES);
  let used = 0;
  const flush = async () => {
    for (let done = 0; done < used;) done += (await handle.write(buffer, done, used - done)).bytesWritten;
    used = 0;
  };
  const sink: ByteSink = {
    async write(bytes) {
      if (used + bytes.length > buffer.length) await flush();
      if (bytes.length >= buffer.length) {
        for (let done = 0; done < bytes.length;) done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
      } else {
        buffer.set(bytes, used);
        used += bytes.length;
      }
    },
  };
  try {
    const result = "modelDir" in source
      ? await exportModelDir(nodeModelDir(source.modelDir), sink, opts)
      : await exportRandom(QWEN25_SHAPES[source.shape], source.seed, nodeModelDir(source.tokenizerDir ?? QWEN25_TOKENIZER_DIR), sink,
        { ...opts, name: opts.name ?? `${source.shape} random seed ${source.seed}` });
    await flush();
    await handle.close();
    await rename(tmp, outPath);
    return result;
  } catch (e) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}
