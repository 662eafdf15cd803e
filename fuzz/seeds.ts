// The valid inputs that mutators start from, cut down from the embedded tiny model so that a case loads in
// milliseconds: a model whose embedding has 544 rows (the 512 ids of the tokenizer below and room for its added
// tokens), and a byte-level BPE tokenizer of 512 ids with the Qwen2.5 pre-tokenizer, added tokens and chat template.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Compiled to dist/fuzz/, two levels below the repository root.
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tinyDir = resolve(repoRoot, "models", "tiny-qwen2");

export const MICRO_VOCAB = 544;
const MINI_IDS = 512;

export interface TensorEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface ModelSeed {
  config: Record<string, any>;
  generation: Record<string, any>;
  /** Tensor name -> entry, in file order. */
  header: Record<string, TensorEntry>;
  data: Uint8Array;
}

/** A safetensors file: the 8-byte header length, the header (JSON text, or an object to serialize), the data. */
export function safetensorsBytes(header: object | string, data: Uint8Array): Uint8Array {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

let model: ModelSeed | undefined;

export function microModel(): ModelSeed {
  if (!model) {
    const file = readFileSync(resolve(tinyDir, "model.safetensors"));
    const n = Number(file.readBigUInt64LE(0));
    const { __metadata__: _, ...tensors } = JSON.parse(file.subarray(8, 8 + n).toString("utf8"));
    const body = file.subarray(8 + n);
    const header: Record<string, TensorEntry> = {};
    const parts: Uint8Array[] = [];
    let at = 0;
    for (const [name, t] of Object.entries<TensorEntry>(tensors).sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0])) {
      const shape = name === "model.embed_tokens.weight" ? [MICRO_VOCAB, t.shape[1]] : t.shape;
      const bytes = shape.reduce((a, d) => a * d, 2);
      parts.push(body.subarray(t.data_offsets[0], t.data_offsets[0] + bytes));
      header[name] = { dtype: t.dtype, shape, data_offsets: [at, at + bytes] };
      at += bytes;
    }
    const config = JSON.parse(readFileSync(resolve(tinyDir, "config.json"), "utf8"));
    model = {
      config: { ...config, vocab_size: MICRO_VOCAB, bos_token_id: MINI_IDS, eos_token_id: MINI_IDS, max_position_embeddings: 4096 },
      generation: { bos_token_id: MINI_IDS, eos_token_id: [MINI_IDS + 2, MINI_IDS] },
      header,
      data: Buffer.concat(parts),
    };
  }
  return structuredClone(model);
}

let tokenizer: { tokenizer: Record<string, any>; config: Record<string, any> } | undefined;

export function miniTokenizer(): { tokenizer: Record<string, any>; config: Record<string, any> } {
  if (!tokenizer) {
    const full = JSON.parse(readFileSync(resolve(tinyDir, "tokenizer.json"), "utf8"));
    const config = JSON.parse(readFileSync(resolve(tinyDir, "tokenizer_config.json"), "utf8"));
    const vocab = Object.fromEntries(Object.entries<number>(full.model.vocab).filter(([, id]) => id < MINI_IDS));
    const merges = (full.model.merges as string[]).filter((m) => {
      const [a, b] = m.split(" ");
      return a in vocab && b in vocab && a + b in vocab;
    });
    // Added tokens follow the vocabulary, as in the full tokenizer.
    const renumber = new Map<number, number>(full.added_tokens.map((t: { id: number }, i: number) => [t.id, MINI_IDS + i]));
    tokenizer = {
      tokenizer: {
        ...full,
        added_tokens: full.added_tokens.map((t: { id: number }) => ({ ...t, id: renumber.get(t.id) })),
        model: { ...full.model, vocab, merges },
      },
      config: {
        ...config,
        added_tokens_decoder: Object.fromEntries(Object.entries(config.added_tokens_decoder)
          .map(([id, t]) => [String(renumber.get(Number(id))), t])),
      },
    };
  }
  return structuredClone(tokenizer);
}
