// Bad input: each case must fail with a clear error naming the file, tensor or argument, without a
// hang and without losing the GPU device (the same device runs a good model afterwards). Corrupt
// models are copies of the embedded tiny model with one thing broken; the user's files are never touched.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
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
  ["missing tensor", () => corruptModel(withHeader((h) => { delete h["model.layers.1.mlp.up_proj.weight"]; })),
    /tensor "model\.layers\.1\.mlp\.up_proj\.weight" is missing/],
  ["tensor of the wrong shape for config.json", () => corruptModel(original, { intermediate_size: 178 }),
    /model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[176,64\], but config\.json implies \[178,64\]/],
  ["I32 weights", () => corruptModel(withHeader((h) => { h["model.norm.weight"].dtype = "I32"; h["model.norm.weight"].shape = [32]; })),
    /model\.norm\.weight" has dtype I32/],
  ["rope_scaling in config.json", () => corruptModel(original, { rope_scaling: { type: "yarn", factor: 4 } }), /config\.json: rope_scaling/],
  ["sliding window in config.json", () => corruptModel(original, { use_sliding_window: true }), /config\.json: use_sliding_window/],
  ["another model_type", () => corruptModel(original, { model_type: "llama" }), /config\.json: model_type "llama"/],
  ["heads that do not divide", () => corruptModel(original, { num_key_value_heads: 3 }), /num_attention_heads 4 is not a multiple of num_key_value_heads 3/],
];

for (const [name, make, pattern] of cases) {
  test(`bad input: ${name}`, async () => loadFails(make(), pattern));
}

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
