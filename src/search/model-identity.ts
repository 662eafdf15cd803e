// Which model an index's embeddings come from, recognised by content rather than by folder: the same model copied
// or downloaded anywhere is the same model, and another model in a folder of the same name with the same config
// (a fine-tune, other weights of one architecture) is not.
import { createHash } from "node:crypto";
import type { ByteSource, ModelDir } from "../io/files.ts";
import { asModelFolder, type ModelFolder } from "../model/folder.ts";
import { openModelWeights } from "../model/safetensors.ts";

/** One safetensors file of the weights. */
export interface WeightsFile {
  /** The file's name in the model folder. */
  file: string;
  size: number;
  /** SHA-256 of the header (length and JSON): the tensors' names, dtypes, shapes and places in the file. */
  header: string;
  /** SHA-256 of WEIGHT_SAMPLES slices of the data, spread evenly over it from its first byte to its last. */
  sample: string;
}

export interface ModelIdentity {
  /** The folder's name, for people to read; not compared, since a copy of the model may live anywhere. */
  name: string;
  /** SHA-256 of config.json's content, keys sorted, so that formatting does not count. */
  configHash: string;
  /** SHA-256 over the names and contents of the tokenizer files the folder has (TOKENIZER_FILES). */
  tokenizerHash: string;
  /** In file-name order. */
  weights: WeightsFile[];
}

/** The files TextTokenizer.load reads, where present. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja"];

/**
 * Slices of WEIGHT_SAMPLE_BYTES read from each weights file. Hashing whole files would read gigabytes on every
 * `search`; 64 slices of 4 KiB (256 KiB, a few milliseconds) differ between any two trained models, whose weights
 * differ nearly everywhere. Two models differing only in bytes that no slice covers (a single edited tensor) are
 * not told apart.
 */
const WEIGHT_SAMPLES = 64;
const WEIGHT_SAMPLE_BYTES = 4096;

const sha256 = () => createHash("sha256");

export async function modelIdentity(source: ModelDir | ModelFolder): Promise<ModelIdentity> {
  const { dir, configJson } = await asModelFolder(source);
  const name = dir.name.split(/[\\/]/).filter(Boolean).at(-1) ?? dir.name;
  const tokenizer = sha256();
  for (const file of TOKENIZER_FILES) {
    if (!(await dir.exists(file))) continue;
    const text = await dir.readText(file);
    // Each name and content with its length, so that no two sets of files hash alike by running together.
    tokenizer.update(`${file}\0${Buffer.byteLength(text)}\0`).update(text);
  }
  return {
    name,
    configHash: sha256().update(canonicalJson(configJson)).digest("hex"),
    tokenizerHash: tokenizer.digest("hex"),
    weights: await weightsIdentity(dir),
  };
}

/** The weights files, checked as the loader checks them (so a bad one is named here already), then hashed. */
async function weightsIdentity(dir: ModelDir): Promise<WeightsFile[]> {
  const sources = new Map<string, ByteSource>();
  for (const tensor of (await openModelWeights(dir)).values()) sources.set(tensor.source.name, tensor.source);
  try {
    const files: WeightsFile[] = [];
    for (const source of sources.values()) {
      const lengthBytes = await source.read(0, 8);
      const dataStart = 8 + Number(new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true));
      const header = sha256().update(lengthBytes).update(await source.read(8, dataStart - 8)).digest("hex");
      const sample = sha256();
      const dataBytes = source.size - dataStart;
      const slice = Math.min(WEIGHT_SAMPLE_BYTES, dataBytes);
      const last = dataBytes - slice;
      for (let i = 0; i < WEIGHT_SAMPLES && slice > 0; i++) {
        sample.update(await source.read(dataStart + Math.round((last * i) / (WEIGHT_SAMPLES - 1)), slice));
      }
      const file = source.name.split(/[\\/]/).at(-1)!;
      files.push({ file, size: source.size, header, sample: sample.digest("hex") });
    }
    return files.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  } finally {
    await Promise.all([...sources.values()].map((s) => s.close()));
  }
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Why `given` is not the model `stored` describes: one reason per part that differs; empty when it is the same. */
export function identityDiff(stored: ModelIdentity, given: ModelIdentity): string[] {
  const reasons: string[] = [];
  if (stored.configHash !== given.configHash) {
    reasons.push(`config.json differs (index has configHash ${stored.configHash}, this model ${given.configHash})`);
  }
  if (stored.tokenizerHash !== given.tokenizerHash) {
    reasons.push(`the tokenizer files differ (index has tokenizerHash ${stored.tokenizerHash}, this model ${given.tokenizerHash})`);
  }
  const names = (w: WeightsFile[]) => w.map((f) => f.file).join(", ");
  if (names(stored.weights) !== names(given.weights)) {
    reasons.push(`the weights are other files (index has ${names(stored.weights)}; this model ${names(given.weights)})`);
    return reasons;
  }
  stored.weights.forEach((s, i) => {
    const g = given.weights[i];
    if (s.size !== g.size) reasons.push(`${s.file} is ${g.size} bytes, the index's ${s.size}`);
    else if (s.header !== g.header) reasons.push(`${s.file} holds other tensors (its header differs from the index's)`);
    else if (s.sample !== g.sample) reasons.push(`${s.file} holds other weights (the sampled bytes differ from the index's)`);
  });
  return reasons;
}
