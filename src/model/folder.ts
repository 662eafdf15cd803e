// A model folder's metadata, read once: config.json (as written, and parsed into a Qwen2Config) and
// generation_config.json. The loader, the engine's generation defaults, GGUF export and an index's model
// identity all take it from here.
import { readJson, type ModelDir } from "../io/files.ts";
import { parseConfig, type Qwen2Config } from "./config.ts";

export interface ModelFolder {
  readonly dir: ModelDir;
  readonly config: Qwen2Config;
  /** config.json as written (an index hashes it to recognise the model). */
  readonly configJson: Record<string, unknown>;
  /** generation_config.json, or {} when the folder has none. */
  readonly generationConfig: Record<string, unknown>;
}

export async function openModelFolder(dir: ModelDir): Promise<ModelFolder> {
  if (!(await dir.exists("config.json"))) throw new Error(`${dir.name}: no config.json (not a Hugging Face model directory?)`);
  const configJson = await readJson(dir, "config.json");
  const generationConfig = (await dir.exists("generation_config.json")) ? await readJson(dir, "generation_config.json") : {};
  const config = parseConfig(configJson, `${dir.name}/config.json`, generationConfig, `${dir.name}/generation_config.json`);
  return { dir, configJson, generationConfig, config };
}

/** `source` as a folder: read now when given as a plain ModelDir. */
export async function asModelFolder(source: ModelDir | ModelFolder): Promise<ModelFolder> {
  return "config" in source ? source : openModelFolder(source);
}
