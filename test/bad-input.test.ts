// Bad input: each case must fail with a clear error naming the file, tensor or argument, without a
// hang and without losing the GPU device (the same device runs a good model afterwards). Corrupt
// models are copies of the embedded tiny model with one thing broken; the user's files are never touched.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { parseConfig } from "../src/model/config.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { embeddedModelDir, repoRoot } from "./shared-paths.ts";

const { device } = await nodeGpu();
const source = embeddedModelDir();
const original = readFileSync(join(source, "model.safetensors"));
const headerLength = Number(original.readBigUInt64LE(0));
const header = JSON.parse(original.subarray(8, 8 + headerLength).toString("utf8"));
const data = original.subarray(8 + headerLength);

/** A copy of the tiny model whose safetensors file is `bytes`, and whose config.json is `config` if given. */
const made: string[] = [];
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function corruptModel(bytes: Uint8Array, config?: object): string {
  const dir = mkdtempSync(join(tmpdir(), "r3gpu-bad-"));
  made.push(dir);
  for (const f of ["generation_config.json", "golden.json", "golden.safetensors"]) copyFileSync(join(source, f), join(dir, f));
  const cfg = JSON.parse(readFileSync(join(source, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, ...config }));
  writeFileSync(join(dir, "model.safetensors"), bytes);
  return dir;
}

/** The tiny model's file with its header edited (the data section unchanged). */
function withHeader(edit: (h: any) => void, rawHeader?: string): Uint8Array {
  const h = structuredClone(header);
  edit(h);
  const json = Buffer.from(rawHeader ?? JSON.stringify(h), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

/** The tiny model's file without one tensor: its entry and its bytes, the others moved up to leave no gap. */
function withoutTensor(name: string): Uint8Array {
  const { __metadata__: metadata, ...tensors } = structuredClone(header);
  delete tensors[name];
  const parts: Buffer[] = [];
  let at = 0;
  const kept = Object.entries<any>(tensors).sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0]);
  for (const [, t] of kept) {
    const [begin, end] = t.data_offsets;
    parts.push(data.subarray(begin, end));
    t.data_offsets = [at, at + end - begin];
    at += end - begin;
  }
  const json = Buffer.from(JSON.stringify({ __metadata__: metadata, ...Object.fromEntries(kept) }), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...parts]);
}

async function loadFails(dir: string, pattern: RegExp): Promise<void> {
  await assert.rejects(Qwen2Model.load(device, nodeModelDir(dir)), pattern);
}

const embed = "model.embed_tokens.weight";
const cases: [string, () => string, RegExp][] = [
  ["truncated safetensors file", () => corruptModel(original.subarray(0, original.length - 1000)),
    /model\.safetensors.*out of range.*truncated/],
  ["header length beyond the file", () => {
    const b = Buffer.from(original);
    b.writeBigUInt64LE(BigInt(original.length + 5), 0);
    return corruptModel(b);
  }, /model\.safetensors.*header length \d+ beyond the file/],
  ["invalid header JSON", () => corruptModel(withHeader(() => {}, "{\"model.norm.weight\": {")), /model\.safetensors.*JSON/],
  ["data offsets out of range", () => corruptModel(withHeader((h) => {
    const [b, e] = h["model.norm.weight"].data_offsets;
    h["model.norm.weight"].data_offsets = [b + data.length, e + data.length];
  })), /model\.safetensors.*model\.norm\.weight.*out of range/],
  ["overlapping data offsets", () => corruptModel(withHeader((h) => {
    h["model.norm.weight"].data_offsets = [...h["model.layers.0.input_layernorm.weight"].data_offsets];
  })), /model\.safetensors.*overlapping/],
  ["offsets disagreeing with dtype x shape", () => corruptModel(withHeader((h) => {
    h["model.norm.weight"].shape = [32];
  })), /model\.safetensors.*model\.norm\.weight.*disagrees with dtype × shape/],
  ["unknown dtype", () => corruptModel(withHeader((h) => { h[embed].dtype = "Q4_K"; })), /model\.safetensors.*embed_tokens.*dtype "Q4_K"/],
  ["missing tensor", () => corruptModel(withoutTensor("model.layers.1.mlp.up_proj.weight")),
    /tensor "model\.layers\.1\.mlp\.up_proj\.weight" is missing/],
  ["tensor of the wrong shape for config.json", () => corruptModel(original, { intermediate_size: 178 }),
    /model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[176,64\], but config\.json implies \[178,64\]/],
  ["I32 weights", () => corruptModel(withHeader((h) => { h["model.norm.weight"].dtype = "I32"; h["model.norm.weight"].shape = [32]; })),
    /model\.norm\.weight" has dtype I32/],
  ["rope_scaling in config.json", () => corruptModel(original, { rope_scaling: { type: "yarn", factor: 4 } }), /config\.json: rope_scaling/],
  ["sliding window in config.json", () => corruptModel(original, { use_sliding_window: true }), /config\.json: use_sliding_window/],
  ["another model_type", () => corruptModel(original, { model_type: "llama" }), /config\.json: model_type "llama"/],
  ["heads that do not divide", () => corruptModel(original, { num_key_value_heads: 3 }), /num_attention_heads 4 is not a multiple of num_key_value_heads 3/],
  // Each name of 10^9 layers was once built before any check: 2.2 GB at 10^6 layers, std::bad_alloc at 10^9.
  ["num_hidden_layers past every model", () => corruptModel(original, { num_hidden_layers: 1e9 }),
    /config\.json: num_hidden_layers 1000000000 is larger than the supported 1024/],
  ["num_hidden_layers past the layers in the files", () => corruptModel(original, { num_hidden_layers: 500 }),
    /config\.json has num_hidden_layers 500, but the safetensors files hold no tensor of layer 2 \("model\.layers\.2\."\)/],
  // The model would have run with one of its two layers: a wrong answer, not an error.
  ["layers in the files past num_hidden_layers", () => corruptModel(original, { num_hidden_layers: 1 }),
    /the safetensors files hold tensors of layer 1 \("model\.layers\.1\."\), but config\.json has num_hidden_layers 1/],
  // The logits buffer was sized from vocab_size before the embedding was looked at.
  ["vocab_size past the embedding's rows", () => corruptModel(original, { vocab_size: 1 << 24 }),
    /tensor "model\.embed_tokens\.weight" has shape \[151936,64\], but config\.json implies \[16777216,64\] \(vocab_size 16777216, hidden_size 64\)/],
  ["num_key_value_heads disagreeing with layer 0", () => corruptModel(original, { num_key_value_heads: 4 }),
    /tensor "model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[32,64\], but config\.json implies \[64,64\] \(num_key_value_heads 4 × head_dim 16, hidden_size 64\)/],
  // A string "false" is truthy: the model was taken as tied.
  ["tie_word_embeddings as a string", () => corruptModel(original, { tie_word_embeddings: "false" }),
    /config\.json: tie_word_embeddings must be true or false, got "false"/],
  ["use_sliding_window as a string", () => corruptModel(original, { use_sliding_window: "true" }),
    /config\.json: use_sliding_window must be true or false, got "true"/],
  ["untied embeddings without lm_head.weight", () => corruptModel(original, { tie_word_embeddings: false }),
    /config\.json has tie_word_embeddings false \(or leaves it out\), but the safetensors files hold no "lm_head\.weight"/],
  ["eos_token_id past the vocabulary", () => corruptModel(original, { eos_token_id: 2 ** 40 }),
    /config\.json: eos_token_id 1099511627776 must be a token id or a list of them, each from 0 to vocab_size - 1 \(151935\)/],
  ["a head_dim that hidden_size does not give", () => corruptModel(original, { num_attention_heads: 5, num_key_value_heads: 5 }),
    /config\.json: hidden_size 64 is not a multiple of num_attention_heads 5, and no head_dim is given/],
  ["config.json that links to /dev/zero", () => {
    const dir = corruptModel(original);
    rmSync(join(dir, "config.json"));
    symlinkSync("/dev/zero", join(dir, "config.json"));
    return dir;
  }, /config\.json: is a device, not a regular file/],
  ["model.safetensors that is a directory", () => {
    const dir = corruptModel(original);
    rmSync(join(dir, "model.safetensors"));
    mkdirSync(join(dir, "model.safetensors"));
    return dir;
  }, /model\.safetensors: is a directory, not a regular file/],
];

for (const [name, make, pattern] of cases) {
  test(`bad input: ${name}`, async () => loadFails(make(), pattern));
}

test("bad input: config.json numbers that JSON.parse reads as Infinity, and fields of the wrong type", () => {
  const cfg = readFileSync(join(source, "config.json"), "utf8");
  const parse = (text: string) => parseConfig(JSON.parse(text), "m/config.json");
  assert.throws(() => parse(cfg.replace('"rope_theta": 1000000.0', '"rope_theta": 1e999')),
    /m\/config\.json: rope_theta must be a finite number in \(0, 1e\+30\), got Infinity/);
  assert.throws(() => parse(cfg.replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 2')), /rms_norm_eps must be a finite number in \(0, 1\), got 2/);
  assert.throws(() => parse(cfg.replace('"hidden_size": 64', '"hidden_size": "64"')), /hidden_size must be a positive integer, got "64"/);
  assert.throws(() => parse(cfg.replace('"model_type": "qwen2"', '"model_type": ["qwen2"]')), /model_type \["qwen2"\] is not supported/);
  assert.throws(() => parseConfig(JSON.parse(cfg), "m/config.json", [], "m/generation_config.json"), /m\/generation_config\.json: not a JSON object/);
  assert.throws(() => parseConfig(JSON.parse(cfg), "m/config.json", { eos_token_id: ["2"] }, "m/generation_config.json"),
    /m\/generation_config\.json: eos_token_id \["2"\] must be a token id/);
  // Fields of the right type are read as before; JSON null means absent.
  const ok = parseConfig({ ...JSON.parse(cfg), use_sliding_window: null, tie_word_embeddings: true, head_dim: null });
  assert.deepEqual([ok.tieWordEmbeddings, ok.headDim, ok.ropeTheta, ok.eosTokenIds], [true, 16, 1e6, [151643]]);
});

test("bad input: a config.json of 10^6 layers fails cleanly in a process with a 128 MB heap", () => {
  // The bound is the child's own heap limit, not a number the code reports: before the fix this ran out of memory.
  const dir = corruptModel(original, { num_hidden_layers: 1e6 });
  const run = spawnSync(process.execPath, ["--max-old-space-size=128", join(repoRoot, "bin", "r3gpu.js"), "check", dir],
    { encoding: "utf8", timeout: 60_000 });
  assert.equal(run.status, 1, run.stderr);
  assert.match(run.stderr, /config\.json: num_hidden_layers 1000000 is larger than the supported 1024/);
});

const model = await Qwen2Model.load(device, nodeModelDir(source), { maxSeqLen: 16 });

test("bad input: token id >= vocab_size", async () => {
  await assert.rejects(model.prefill([1, 151936]), /token id 151936 at index 1 is out of range: the vocabulary has 151936 ids/);
});

test("bad input: negative and non-integer token ids", async () => {
  await assert.rejects(model.prefill([-1]), /token id -1 at index 0 is out of range/);
  await assert.rejects(model.prefill([2.5]), /token id 2\.5 at index 0 is out of range/);
  await assert.rejects(model.step(-3), /token id -3/);
});

test("bad input: prompt longer than the KV cache", async () => {
  model.reset();
  await assert.rejects(model.prefill(Array.from({ length: 17 }, (_, i) => i)), /17 new tokens at position 0 exceed the KV cache of 16 positions/);
  await model.prefill(Array.from({ length: 16 }, (_, i) => i));
  await assert.rejects(model.step(), /1 new tokens at position 16 exceed the KV cache of 16 positions/);
});

test("bad input: the device survives every failure above and still computes the reference greedy tokens", async () => {
  const golden = JSON.parse(readFileSync(join(source, "golden.json"), "utf8")).sequences[1];
  model.reset();
  const fresh = await Qwen2Model.load(device, nodeModelDir(source), { maxSeqLen: 64 });
  assert.deepEqual(await fresh.generateGreedy(golden.input_ids, 5, []), golden.greedy.new_tokens.slice(0, 5));
});

test("bad input through the CLI: clear message, non-zero exit, no hang", () => {
  const cli = join(repoRoot, "bin", "r3gpu.js");
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 60_000 });
  const truncated = run("check", corruptModel(original.subarray(0, 4)));
  assert.equal(truncated.status, 1);
  assert.match(truncated.stderr, /r3gpu check: .*model\.safetensors: file of 4 bytes is too short/);
  const badId = run("dump", source, "--ids", "5,999999");
  assert.equal(badId.status, 1);
  assert.match(badId.stderr, /token id 999999 at index 1 is out of range/);
  const notInt = run("dump", source, "--ids", "5,abc");
  assert.equal(notInt.status, 2);
  assert.match(notInt.stderr, /--ids: "abc" is not an integer token id/);
  const missing = run("check", join(tmpdir(), "no-such-model-dir"));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no-such-model-dir/);
});
