// GGUF export: the writer's format (parsed back by an independent reader here), dtype rounding, Q8_0 and Q4_0 blocks
// against the types' definitions, the
// seeded random weights computed on the host against the GPU's, and llama.cpp (node-llama-cpp's CPU
// backend) loading the exported shared golden models and continuing them greedily as the HF reference does.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { LLAMACPP_ENTRY, llamaCppMissing, runLlamaCppPeer } from "../src/llamacpp/peer.ts";
import { f32BitsToBf16, f32BitsToF16 } from "../src/llamacpp/convert.ts";
import { exportGgufFile } from "../src/llamacpp/export-file.ts";
import { exportRandom } from "../src/llamacpp/export.ts";
import { byteLevelChars, TokenType } from "../src/llamacpp/vocab.ts";
import { GGUF_MAGIC, writeGguf, type GgufTensor, type GgufValue } from "../src/llamacpp/writer.ts";
import { nodeModelDir } from "../src/io/node.ts";
import type { Qwen2Config } from "../src/model/config.ts";
import { randomMatrixBf16, randomVectorF32 } from "../src/model/random-host.ts";
import { openModelWeights, readTensor } from "../src/model/safetensors.ts";
import { RandomWeights } from "../src/model/weights.ts";
import { BufferSet } from "../src/gpu/buffers.ts";
import { fromBf16Bits, fromF16Bits, layoutWeights, mulberry32, readBytes, testGpu, testKernels, toBf16Bits, toF16Bits } from "./gpu-helpers.ts";
import { embeddedModelDir, goldenDir } from "./shared-paths.ts";

const tmp = await mkdtemp(join(tmpdir(), "r3gpu-gguf-"));
after(() => rm(tmp, { recursive: true, force: true }));

test("llama.cpp peer: its own folder with only the Linux x64 CPU and Vulkan builds; r3gpu's dependencies hold none of it", async () => {
  const peerDir = dirname(LLAMACPP_ENTRY);
  assert.equal(llamaCppMissing(), undefined, "npm run test:node runs scripts/setup-llamacpp.sh first");
  assert.deepEqual(readdirSync(join(peerDir, "node_modules", "@node-llama-cpp")).sort(), ["linux-x64", "linux-x64-vulkan"]);
  assert.throws(() => createRequire(import.meta.url).resolve("node-llama-cpp/package.json"), /Cannot find module/,
    "node-llama-cpp resolves from r3gpu's own node_modules");
  const missing = llamaCppMissing(tmp);
  assert.match(missing ?? "", new RegExp(`${join(tmp, "node_modules").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} has no node-llama-cpp.*setup-llamacpp\.sh`));
  const run = await runLlamaCppPeer({ gguf: join(tmp, "none.gguf"), gpu: false, promptTokens: 1, decodeTokens: 0, timeoutMs: 60_000 });
  assert.match(run.error ?? "", /none\.gguf|no such file|failed/i, "a missing GGUF is the worker's error, not a hang");
});

// ---------------------------------------------------------------------------------------------
// An independent GGUF reader (only what the tests check)

interface ParsedGguf {
  version: number;
  metadata: Map<string, { type: number; value: unknown }>;
  tensors: { name: string; dims: number[]; type: number; offset: number }[];
  alignment: number;
  dataStart: number;
  bytes: Uint8Array;
}

function parseGguf(bytes: Uint8Array): ParsedGguf {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const u32 = () => { pos += 4; return view.getUint32(pos - 4, true); };
  const u64 = () => { pos += 8; return Number(view.getBigUint64(pos - 8, true)); };
  const str = () => { const n = u64(); pos += n; return new TextDecoder().decode(bytes.subarray(pos - n, pos)); };
  const scalar = (type: number): unknown => {
    switch (type) {
      case 0: pos += 1; return view.getUint8(pos - 1);
      case 1: pos += 1; return view.getInt8(pos - 1);
      case 2: pos += 2; return view.getUint16(pos - 2, true);
      case 3: pos += 2; return view.getInt16(pos - 2, true);
      case 4: return u32();
      case 5: pos += 4; return view.getInt32(pos - 4, true);
      case 6: pos += 4; return view.getFloat32(pos - 4, true);
      case 7: pos += 1; return view.getUint8(pos - 1) !== 0;
      case 8: return str();
      case 10: return view.getBigUint64((pos += 8) - 8, true);
      case 11: return view.getBigInt64((pos += 8) - 8, true);
      case 12: pos += 8; return view.getFloat64(pos - 8, true);
      default: throw new Error(`unknown GGUF value type ${type} at byte ${pos}`);
    }
  };
  assert.equal(u32(), GGUF_MAGIC, "magic");
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const metadata = new Map<string, { type: number; value: unknown }>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    if (type === 9) {
      const itemType = u32();
      const n = u64();
      metadata.set(key, { type: 9, value: { itemType, items: Array.from({ length: n }, () => scalar(itemType)) } });
    } else {
      metadata.set(key, { type, value: scalar(type) });
    }
  }
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, u64);
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const alignment = (metadata.get("general.alignment")?.value as number | undefined) ?? 32;
  const dataStart = Math.ceil(pos / alignment) * alignment;
  return { version, metadata, tensors, alignment, dataStart, bytes };
}

function meta(g: ParsedGguf, key: string): unknown {
  const v = g.metadata.get(key);
  assert.ok(v, `metadata ${key} missing`);
  return v.type === 9 ? (v.value as { items: unknown[] }).items : v.value;
}

/** A copy of the tensor's bytes (its own buffer, so typed-array views of it start at 0). */
function tensorData(g: ParsedGguf, name: string): Uint8Array<ArrayBuffer> {
  const t = g.tensors.find((x) => x.name === name);
  assert.ok(t, `tensor ${name} missing`);
  const size = t.dims.reduce((a, d) => a * d, t.type === 0 ? 4 : 2);
  return new Uint8Array(g.bytes.subarray(g.dataStart + t.offset, g.dataStart + t.offset + size));
}

async function writeToMemory(metadata: Map<string, GgufValue>, tensors: GgufTensor[]): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const n = await writeGguf({ write: async (b) => void chunks.push(b.slice()) }, metadata, tensors);
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  assert.equal(out.length, n, "returned size");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer and conversion

test("writer: every value type, arrays, and tensor data at aligned offsets round-trip", async () => {
  const metadata = new Map<string, GgufValue>([
    ["general.alignment", { type: "uint32", value: 64 }],
    ["u8", { type: "uint8", value: 255 }], ["i8", { type: "int8", value: -128 }],
    ["u16", { type: "uint16", value: 65535 }], ["i16", { type: "int16", value: -32768 }],
    ["u32", { type: "uint32", value: 0xffffffff }], ["i32", { type: "int32", value: -5 }],
    ["f32", { type: "float32", value: 1e-6 }], ["bool", { type: "bool", value: true }],
    ["str", { type: "string", value: "Ġhé<|im_end|>" }], ["u64", { type: "uint64", value: 2n ** 63n + 5n }],
    ["i64", { type: "int64", value: -(2n ** 40n) }], ["f64", { type: "float64", value: Math.PI }],
    ["strs", { type: "array", itemType: "string", value: ["a", "", "ü b"] }],
    ["ints", { type: "array", itemType: "int32", value: [1, -2, 3] }],
    ["floats", { type: "array", itemType: "float32", value: [0.5, -2] }],
    ["empty", { type: "array", itemType: "string", value: [] }],
  ]);
  // Sizes off the alignment (10, 6 and 12 bytes), data emitted in uneven chunks.
  const data = [Uint8Array.from({ length: 10 }, (_, i) => i + 1), Uint8Array.from([7, 7, 7, 7, 7, 7]), Uint8Array.from({ length: 12 }, (_, i) => 100 + i)];
  const tensors: GgufTensor[] = [
    { name: "a", type: "F16", dims: [5], produce: async (emit) => { await emit(data[0].subarray(0, 3)); await emit(data[0].subarray(3)); } },
    { name: "b", type: "BF16", dims: [1, 3], produce: (emit) => emit(data[1]) },
    { name: "c", type: "F32", dims: [3, 1], produce: (emit) => emit(data[2]) },
  ];
  const g = parseGguf(await writeToMemory(metadata, tensors));
  assert.equal(g.version, 3);
  assert.equal(g.alignment, 64);
  assert.equal(g.dataStart % 64, 0);
  assert.deepEqual([...g.metadata.keys()], [...metadata.keys()], "keys in order");
  for (const [key, v] of metadata) {
    const got = meta(g, key);
    if (v.type === "float32") assert.equal(got, Math.fround(v.value as number), key);
    else if (v.type === "array" && v.itemType === "float32") assert.deepEqual(got, v.value.map((x) => Math.fround(x as number)), key);
    else if (v.type === "array") assert.deepEqual(got, v.value, key);
    else assert.equal(got, v.value, key);
  }
  assert.deepEqual(g.tensors.map((t) => [t.name, t.dims, t.type, t.offset]), [["a", [5], 1, 0], ["b", [1, 3], 30, 64], ["c", [3, 1], 0, 128]]);
  for (const [i, name] of ["a", "b", "c"].entries()) assert.deepEqual(tensorData(g, name), data[i], name);
});

test("writer: refuses a tensor whose producer emits the wrong number of bytes, and out-of-range integers", async () => {
  const short: GgufTensor = { name: "t", type: "F32", dims: [4], produce: (emit) => emit(new Uint8Array(12)) };
  await assert.rejects(writeToMemory(new Map(), [short]), /tensor "t" produced 12 bytes, expected 16/);
  const long: GgufTensor = { name: "t", type: "F16", dims: [2], produce: (emit) => emit(new Uint8Array(6)) };
  await assert.rejects(writeToMemory(new Map(), [long]), /produced more than its 4 bytes/);
  await assert.rejects(writeToMemory(new Map([["x", { type: "uint32", value: -1 }]]), []), /out of range for uint32/);
});

test("convert: F32 -> F16 and BF16 round to nearest even, including subnormals, overflow and NaN", () => {
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  const rand = mulberry32(5);
  const values = [0, -0, 1, -1, 65504, 65519.99, 65520, 1e6, -Infinity, 2 ** -14, 2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 3 * 2 ** -26,
    6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3.4e38];
  for (let i = 0; i < 20000; i++) values.push((rand() - 0.5) * 2 ** (rand() * 60 - 35));
  for (const v of values) {
    f32[0] = v;
    assert.equal(f32BitsToF16(bits[0]), toF16Bits(f32[0]), `f16 of ${f32[0]}`);
    assert.equal(f32BitsToBf16(bits[0]), toBf16Bits(f32[0]), `bf16 of ${f32[0]}`);
  }
  f32[0] = NaN;
  assert.equal(f32BitsToF16(bits[0]) & 0x7e00, 0x7e00, "NaN stays NaN");
});

// ---------------------------------------------------------------------------------------------
// Seeded random weights: host against GPU

test("random weights computed on the host equal RandomWeights' GPU output bit for bit", async () => {
  const { device } = await testGpu();
  const seed = 1234;
  // A small binding limit splits the matrix into parts, whose values must continue across the split.
  const gpu = new RandomWeights(await testKernels(), new BufferSet(device), 100 * 896 * 2, seed);
  const name = "model.layers.7.mlp.down_proj.weight";
  const [rows, cols] = [333, 896];
  const m = await gpu.matrix(name, [{ name, size: rows }], cols);
  const vectors = ["model.layers.7.post_attention_layernorm.weight", "model.layers.7.self_attn.k_proj.bias"];
  const vbufs = await Promise.all(vectors.map((n) => gpu.vector(n, [{ name: n, size: 130 }])));
  await gpu.finish();
  assert.ok(m.parts.length > 1, "matrix was not split");
  for (const part of m.parts) {
    const host = randomMatrixBf16(name, seed, cols, part.row0, part.rows);
    const want = layoutWeights(new Uint8Array(host.buffer), part.rows, cols, "BF16");
    const got = new Uint8Array(await readBytes(device, part.buffer, want.byteLength));
    assert.ok(Buffer.from(got).equals(Buffer.from(want)), `${name} rows ${part.row0}..${part.row0 + part.rows} differ (compared in the GPU's blocked layout)`);
  }
  for (const [i, n] of vectors.entries()) {
    const got = new Uint32Array(await readBytes(device, vbufs[i], 130 * 4));
    assert.deepEqual(got, new Uint32Array(randomVectorF32(n, seed, 130).buffer), n);
  }
});

test("random weights stacked (q, k and v as one matrix, their biases end to end) hold each tensor's own values", async () => {
  const { device } = await testGpu();
  const seed = 99, cols = 64;
  const parts = [{ name: "model.layers.0.self_attn.q_proj.weight", size: 70 }, { name: "model.layers.0.self_attn.k_proj.weight", size: 18 },
    { name: "model.layers.0.self_attn.v_proj.weight", size: 18 }];
  const gpu = new RandomWeights(await testKernels(), new BufferSet(device), 40 * cols * 2, seed);
  const m = await gpu.matrix("qkv", parts, cols);
  const biases = parts.map((p) => ({ name: p.name.replace(".weight", ".bias"), size: p.size }));
  const vbuf = await gpu.vector("qkv.bias", biases);
  await gpu.finish();
  assert.ok(m.parts.length > 1, "matrix was not split");
  const rows = Uint16Array.from(parts.flatMap((p) => [...randomMatrixBf16(p.name, seed, cols, 0, p.size)]));
  for (const part of m.parts) {
    const host = rows.subarray(part.row0 * cols, (part.row0 + part.rows) * cols);
    const want = layoutWeights(new Uint8Array(host.buffer, host.byteOffset, host.byteLength), part.rows, cols, "BF16");
    const got = new Uint8Array(await readBytes(device, part.buffer, want.byteLength));
    assert.ok(Buffer.from(got).equals(Buffer.from(want)), `stacked rows ${part.row0}..${part.row0 + part.rows} differ`);
  }
  const want = Uint32Array.from(biases.flatMap((b) => [...new Uint32Array(randomVectorF32(b.name, seed, b.size).buffer)]));
  assert.deepEqual(new Uint32Array(await readBytes(device, vbuf, want.length * 4)), want);
});

test("export of a random shape writes the host-generated weights under llama.cpp's names", async () => {
  const cfg: Qwen2Config = { hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ropeTheta: 1e6,
    rmsNormEps: 1e-6, vocabSize: 151936, tieWordEmbeddings: false, maxPositionEmbeddings: 4096, eosTokenIds: [151643] };
  const chunks: Uint8Array[] = [];
  await exportRandom(cfg, 9, nodeModelDir(embeddedModelDir()), { write: async (b) => void chunks.push(b.slice()) }, { dtype: "bf16", name: "t" });
  const g = parseGguf(Buffer.concat(chunks));
  const q = tensorData(g, "blk.1.attn_q.weight");
  assert.deepEqual(new Uint16Array(q.buffer), randomMatrixBf16("model.layers.1.self_attn.q_proj.weight", 9, 64, 0, 64));
  const norm = tensorData(g, "blk.0.ffn_norm.weight");
  assert.deepEqual(new Float32Array(norm.buffer), randomVectorF32("model.layers.0.post_attention_layernorm.weight", 9, 64));
  assert.deepEqual(g.tensors.find((t) => t.name === "output.weight")?.dims, [64, 151936], "untied LM head, dims innermost first");
  assert.equal((meta(g, "tokenizer.ggml.tokens") as string[]).length, 151936);
});

// ---------------------------------------------------------------------------------------------
// Shared golden models through llama.cpp

interface Golden {
  sequences: { input_ids: number[]; greedy: { new_tokens: number[]; steps: { margin_top1_top2: number }[] } }[];
}

// With F32 weights and KV cache llama.cpp's logits differ from the float64 reference by about 1e-5 relative;
// steps whose top-2 margin is below this could legitimately flip, and everything after them would differ.
const MIN_MARGIN = 2e-3;

for (const set of ["tiny-public", "small-public"]) {
  test(`export ${set} (f32): metadata, tensors and data; llama.cpp's greedy continuation matches golden.json`, async (t) => {
    const dir = join(goldenDir(), set);
    const out = join(tmp, `${set}.gguf`);
    const result = await exportGgufFile({ modelDir: dir }, out, { dtype: "f32" });
    assert.equal(result.warnings.some((w) => w.includes("synthetic")), set === "small-public", `warnings: ${result.warnings}`);
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    const g = parseGguf(await readFile(out));

    assert.equal(meta(g, "general.architecture"), "qwen2");
    assert.equal(meta(g, "general.alignment"), 32);
    assert.equal(meta(g, "general.file_type"), 0);
    assert.equal(meta(g, "qwen2.embedding_length"), config.hidden_size);
    assert.equal(meta(g, "qwen2.block_count"), config.num_hidden_layers);
    assert.equal(meta(g, "qwen2.feed_forward_length"), config.intermediate_size);
    assert.equal(meta(g, "qwen2.attention.head_count"), config.num_attention_heads);
    assert.equal(meta(g, "qwen2.attention.head_count_kv"), config.num_key_value_heads);
    assert.equal(meta(g, "qwen2.rope.freq_base"), Math.fround(config.rope_theta));
    assert.equal(meta(g, "qwen2.attention.layer_norm_rms_epsilon"), Math.fround(config.rms_norm_eps));
    assert.equal(meta(g, "tokenizer.ggml.model"), "gpt2");
    assert.equal(meta(g, "tokenizer.ggml.pre"), "qwen2");
    const tokens = meta(g, "tokenizer.ggml.tokens") as string[];
    const types = meta(g, "tokenizer.ggml.token_type") as number[];
    assert.equal(tokens.length, config.vocab_size, "one token per embedding row");
    assert.equal(types.length, config.vocab_size);
    assert.equal(new Set(tokens).size, tokens.length, "tokens are unique");
    if (set === "tiny-public") {
      assert.equal(tokens[151643], "<|endoftext|>");
      assert.equal(types[151643], TokenType.CONTROL);
      assert.equal(tokens[151657], "<tool_call>");
      assert.equal(types[151657], TokenType.USER_DEFINED);
      assert.equal(tokens[151665], "<|embed_token|>");
      assert.equal([tokens[151666], types[151666]].join(), `[PAD151666],${TokenType.UNUSED}`);
      assert.equal(meta(g, "tokenizer.ggml.eos_token_id"), 151645, "tokenizer_config's eos_token <|im_end|>");
      assert.equal((meta(g, "tokenizer.ggml.merges") as string[])[0], "Ġ Ġ");
    } else {
      assert.deepEqual(tokens.slice(0, 256), byteLevelChars());
      assert.equal(tokens[7918], "<|endoftext|>");
      assert.equal(meta(g, "tokenizer.ggml.eos_token_id"), 7918);
    }

    const L = config.num_hidden_layers;
    assert.equal(g.tensors.length, 2 + 12 * L + (config.tie_word_embeddings ? 0 : 1));
    for (const tensor of g.tensors) {
      assert.equal(tensor.offset % 32, 0, `${tensor.name} offset aligned`);
      assert.equal(tensor.type, 0, `${tensor.name} is F32`);
    }
    const dims = (name: string) => g.tensors.find((x) => x.name === name)?.dims;
    const H = config.hidden_size, D = H / config.num_attention_heads;
    assert.deepEqual(dims("token_embd.weight"), [H, config.vocab_size]);
    assert.deepEqual(dims("blk.0.attn_k.weight"), [H, config.num_key_value_heads * D]);
    assert.deepEqual(dims("blk.0.attn_k.bias"), [config.num_key_value_heads * D]);
    assert.deepEqual(dims(`blk.${L - 1}.ffn_down.weight`), [config.intermediate_size, H]);
    assert.equal(dims("output.weight"), undefined, "tied: no output.weight");
    // BF16 -> F32 is exact, so the data must be the stored weights widened.
    const weights = await openModelWeights(nodeModelDir(dir));
    for (const [hf, gguf] of [["model.layers.1.mlp.gate_proj.weight", "blk.1.ffn_gate.weight"], ["model.norm.weight", "output_norm.weight"],
      ["model.layers.0.self_attn.v_proj.bias", "blk.0.attn_v.bias"]]) {
      const want = await readTensor(weights.get(hf)!);
      assert.deepEqual(new Float32Array(tensorData(g, gguf).buffer), want, gguf);
    }
    await Promise.all([...new Set([...weights.values()].map((w) => w.source))].map((s) => s.close()));

    const golden: Golden = JSON.parse(await readFile(join(dir, "golden.json"), "utf8"));
    const seq = golden.sequences[1];
    const want = seq.greedy.new_tokens;
    // One thread: on a busy machine llama.cpp's worker threads spin and slow down by orders of magnitude.
    const run = await runLlamaCppPeer({ gguf: out, gpu: false, promptTokens: seq.input_ids, decodeTokens: want.length - 1,
      timeoutMs: 60_000, threads: 1, kvCacheType: "F32" });
    assert.equal(run.error, undefined, run.error);
    assert.equal(run.timed_out, false);
    const firstClose = seq.greedy.steps.findIndex((s) => s.margin_top1_top2 < MIN_MARGIN);
    const compared = firstClose < 0 ? want.length : firstClose + 1;
    assert.deepEqual(run.tokens.slice(0, compared), want.slice(0, compared));
    const agree = run.tokens.findIndex((tok, i) => tok !== want[i]);
    t.diagnostic(`llama.cpp ${run.device}: ${agree < 0 ? run.tokens.length : agree}/${want.length} greedy tokens agree ` +
      `(${compared} required); prefill ${run.prefill_tok_s?.toFixed(0)} tok/s, decode ${run.decode_tok_s?.toFixed(0)} tok/s`);
  });
}

test("runLlamaCppPeer: a run past its time limit is killed and reported as timed out", async () => {
  const started = performance.now();
  const run = await runLlamaCppPeer({ gguf: join(tmp, "tiny-public.gguf"), gpu: false, promptTokens: 8, decodeTokens: 1000, timeoutMs: 50 });
  assert.equal(run.timed_out, true);
  assert.ok(performance.now() - started < 10_000, "returned promptly");
  assert.equal(run.decode_tok_s, null);
});

// ---------------------------------------------------------------------------------------------
// Quantized types (r3gpu's --quant q8 and q4)

/** The values of a Q8_0 or Q4_0 tensor's blocks as ggml defines them, with each block's scale. */
function dequantizeBlocks(data: Uint8Array, type: "Q8_0" | "Q4_0"): { values: Float64Array; scales: Float64Array } {
  const blockBytes = type === "Q8_0" ? 34 : 18;
  const blocks = data.length / blockBytes;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = new Float64Array(blocks * 32), scales = new Float64Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes;
    const d = fromF16Bits(view.getUint16(at, true));
    scales[b] = d;
    for (let j = 0; j < 32; j++) {
      values[b * 32 + j] = type === "Q8_0" ? view.getInt8(at + 2 + j) * d
        // Q4_0: value j in the low nibble of byte j, value j + 16 in its high nibble, each n - 8.
        : (((data[at + 2 + (j % 16)] >> (j < 16 ? 0 : 4)) & 15) - 8) * d;
    }
  }
  return { values, scales };
}

test("export q8_0 and q4_0: r3gpu's quantized types per tensor, the definitions' scales, values within half a step; llama.cpp runs them", async () => {
  const cfg: Qwen2Config = { hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ropeTheta: 1e6,
    rmsNormEps: 1e-6, vocabSize: 151936, tieWordEmbeddings: true, maxPositionEmbeddings: 4096, eosTokenIds: [151643] };
  for (const dtype of ["q8_0", "q4_0"] as const) {
    const chunks: Uint8Array[] = [];
    await exportRandom(cfg, 3, nodeModelDir(embeddedModelDir()), { write: async (b) => void chunks.push(b.slice()) }, { dtype, name: "t" });
    const file = Buffer.concat(chunks);
    const g = parseGguf(file);
    assert.equal(meta(g, "general.file_type"), dtype === "q8_0" ? 7 : 2);
    const out = join(tmp, `random-${dtype}.gguf`);
    await writeFile(out, file);
    const run = await runLlamaCppPeer({ gguf: out, gpu: false, promptTokens: 8, decodeTokens: 4, timeoutMs: 60_000, threads: 1 });
    assert.equal(run.error, undefined, `llama.cpp on ${dtype}: ${run.error}`);
    assert.equal(run.tokens.length, 5, `llama.cpp on ${dtype}: its greedy tokens`);
    const typeOf = (name: string) => g.tensors.find((t) => t.name === name)!.type;
    // ggml_type: Q8_0 8, Q4_0 2, F16 1, F32 0. q8 keeps the attention and the embedding lookup unquantized (F16
    // here) and adds an int8 output.weight for the tied table; q4 has one Q8_0 table for both and keeps the first
    // layer's MLP in Q8_0.
    const q8 = dtype === "q8_0";
    assert.equal(typeOf("token_embd.weight"), q8 ? 1 : 8);
    assert.equal(typeOf("blk.1.attn_q.weight"), q8 ? 1 : 8);
    assert.equal(typeOf("blk.0.ffn_gate.weight"), 8);
    assert.equal(typeOf("blk.0.ffn_down.weight"), 8);
    assert.equal(typeOf("blk.1.ffn_gate.weight"), q8 ? 8 : 2);
    assert.equal(typeOf("blk.1.ffn_down.weight"), q8 ? 8 : 2);
    assert.equal(g.tensors.find((t) => t.name === "output.weight")?.type, q8 ? 8 : undefined);
    assert.equal(typeOf("blk.0.attn_norm.weight"), 0);
    // The first 64 rows of a tied table's int8 output.weight are enough to check its blocks.
    const quantized = q8
      ? [["model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight", 64, 96], ["model.embed_tokens.weight", "output.weight", 64, 64]] as const
      : [["model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight", 64, 96], ["model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", 32, 64]] as const;
    for (const [hf, gguf, rows, cols] of quantized) {
      const type = typeOf(gguf) === 8 ? "Q8_0" : "Q4_0";
      const t = g.tensors.find((x) => x.name === gguf)!;
      const data = g.bytes.subarray(g.dataStart + t.offset, g.dataStart + t.offset + (rows * cols / 32) * (type === "Q8_0" ? 34 : 18));
      const { values, scales } = dequantizeBlocks(data, type);
      const x = Array.from(randomMatrixBf16(hf, 3, cols, 0, rows), fromBf16Bits);
      for (let b = 0; b < scales.length; b++) {
        const group = x.slice(32 * b, 32 * b + 32);
        const m = group.reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), 0);
        // The definitions' scales: amax / 127 or m / -8, as f16 (src/model/quant.ts).
        const want = type === "Q8_0" ? fromF16Bits(toF16Bits(Math.fround(Math.abs(m) * Math.fround(1 / 127)))) : -fromF16Bits(toF16Bits(m / 8));
        assert.equal(scales[b], want, `${gguf} block ${b} scale`);
        // Within half a step, but for Q4_0's values past -7/8 m (its levels run from m = -8 d to 7 d).
        const d = Math.abs(scales[b]);
        for (let j = 0; j < 32; j++) {
          const bound = Math.max(d / 2, type === "Q4_0" && Math.sign(group[j]) === -Math.sign(m) ? Math.abs(group[j]) - 7 * d : 0);
          assert.ok(Math.abs(values[32 * b + j] - group[j]) <= bound * (1 + 1e-6), `${gguf} value ${32 * b + j}`);
        }
      }
    }
  }
});

test("export q4_0 of a model whose rows are not whole blocks of 32 is refused, naming the tensor, leaving no file", async () => {
  const out = join(tmp, "tiny-q4.gguf");
  // tiny-public's intermediate size is 176: down_proj's rows are 5.5 blocks.
  await assert.rejects(exportGgufFile({ modelDir: embeddedModelDir() }, out, { dtype: "q4_0" }),
    /tensor "blk\.0\.ffn_down\.weight" is Q8_0, whose blocks of 32 need a multiple of 32 values per row, not 176/);
  await assert.rejects(readFile(out), /ENOENT/);
});
