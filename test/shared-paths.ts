// Locates the read-only shared test data: R3GPU_GOLDEN_DIR, else ../shared/golden beside the repository.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Compiled tests run from dist/test/, two levels below the repository root.
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function goldenDir(): string {
  return process.env.R3GPU_GOLDEN_DIR ?? resolve(repoRoot, "..", "shared", "golden");
}

/** The Qwen2.5 tokenizer files (vocab.json, merges.txt, tokenizer_config.json), a sibling of the golden folder. */
export function qwenTokenizerDir(): string {
  return resolve(goldenDir(), "..", "qwen2.5-tokenizer");
}

/** The model embedded in the repository (a copy of the shared tiny-public set). */
export function embeddedModelDir(): string {
  return resolve(repoRoot, "models", "tiny-qwen2");
}
