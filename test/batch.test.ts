// Batched generation (continuous batching over KV-cache slots) gives, sequence by sequence, exactly what each
// sequence gives alone: greedy and seeded sampling, ragged prompts, batch sizes that are not powers of two, more
// prompts than slots (waiting ones join as others finish), one sequence stopping at once while others run long,
// and a sequence that cannot fit refused by name while the others finish.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { nodeModelDir } from "../src/io/node.ts";
import { Engine } from "../src/text/engine.ts";
import { generateBatch, generateBatchStream, type GenerateOptions, type GenerateResult, type Prompt } from "../src/text/generate.ts";
import { testGpu } from "./gpu-helpers.ts";
import { embeddedModelDir } from "./shared-paths.ts";

const { device } = await testGpu();
const dir = nodeModelDir(embeddedModelDir());
const golden = JSON.parse(await readFile(join(embeddedModelDir(), "golden.json"), "utf8"));
const alone = await Engine.load(device, dir, { maxSeqLen: 512 });
const batched = await Engine.load(device, dir, { maxSeqLen: 512, maxBatch: 3 });

// Ragged prompts: the golden sequences (1, 7, 33, 300 tokens) and a few texts.
const prompts: Prompt[] = [
  ...golden.sequences.map((s: { input_ids: number[] }) => ({ ids: s.input_ids })),
  "The capital of France is", "a", "Write a haiku about GPUs.",
];
const noEos: GenerateOptions = { eosTokenIds: [], maxNewTokens: 12 };

const same = (got: GenerateResult, want: GenerateResult, what: string) => {
  assert.deepEqual(got.ids, want.ids, `${what}: ids`);
  assert.equal(got.text, want.text, `${what}: text`);
  assert.equal(got.stopReason, want.stopReason, `${what}: stop reason`);
};

async function oneByOne(opts: GenerateOptions[]): Promise<GenerateResult[]> {
  const out = [];
  for (const [i, p] of prompts.entries()) out.push(await alone.generate(p, opts[i]));
  return out;
}

describe("batched generation on tiny-qwen2 (3 slots, 7 prompts)", () => {
  test("greedy: every sequence as alone, in prompt order, and the golden continuations", async () => {
    const opts = prompts.map(() => noEos);
    const want = await oneByOne(opts);
    const got = await batched.generateBatch(prompts, noEos);
    got.forEach((r, i) => same(r, want[i], `prompt ${i}`));
    golden.sequences.forEach((s: { greedy: { new_tokens: number[] } }, i: number) => assert.deepEqual(got[i].ids, s.greedy.new_tokens.slice(0, 12)));
  });

  test("seeded sampling, repetition penalty and per-sequence options give the same tokens batched as alone", async () => {
    const opts: GenerateOptions[] = prompts.map((_, i) => ({
      ...noEos, doSample: true, temperature: 0.8 + 0.1 * i, topK: 20 + i, topP: 0.9, seed: 100 + i, repetitionPenalty: i % 2 ? 1.3 : 1,
    }));
    const want = await oneByOne(opts);
    const got = await generateBatch(batched.model, batched.tokenizer, prompts, opts.map((o) => ({ ...o, chatTemplate: batched.chatTemplate })));
    got.forEach((r, i) => {
      same(r, want[i], `prompt ${i}`);
      assert.equal(r.seed, 100 + i);
    });
  });

  test("one sequence stops at once (maxNewTokens 1, a stop id) while the others run long", async () => {
    const first = (await alone.generate(prompts[1], noEos)).ids[0];
    const opts: GenerateOptions[] = prompts.map((_, i) =>
      i === 0 ? { ...noEos, maxNewTokens: 1 } : i === 1 ? { ...noEos, stopIds: [first] } : { ...noEos, maxNewTokens: 20 });
    const want = await oneByOne(opts);
    const got = await batched.generateBatch(prompts, opts);
    got.forEach((r, i) => same(r, want[i], `prompt ${i}`));
    assert.equal(got[0].ids.length, 1);
    assert.deepEqual([got[1].stopReason, got[1].ids], ["stop-id", [first]]);
    assert.equal(got[2].ids.length, 20);
  });

  test("streamed: each prompt's chunks join to its text", async () => {
    const stream = generateBatchStream(batched.model, batched.tokenizer, prompts, noEos);
    const texts = prompts.map(() => "");
    let r = await stream.next();
    for (; !r.done; r = await stream.next()) texts[r.value.index] += r.value.text;
    r.value.forEach((result, i) => assert.equal(texts[i], result.text, `prompt ${i}`));
  });

  test("generations started one after another join the running batch and match their solo runs", async () => {
    const want = await oneByOne(prompts.map(() => noEos));
    const running = prompts.map((p, i) => new Promise<GenerateResult>((resolve) => setTimeout(() => resolve(batched.generate(p, noEos)), 30 * i)));
    (await Promise.all(running)).forEach((r, i) => same(r, want[i], `prompt ${i}`));
  });

  test("a prompt that cannot fit the KV cache is refused by name; the others finish", async () => {
    const tooLong: Prompt = { ids: new Array(600).fill(5) };
    const results = await Promise.allSettled([batched.generate(prompts[1], noEos), batched.generate(tooLong, noEos), batched.generate(prompts[5], noEos)]);
    assert.equal(results[0].status, "fulfilled");
    assert.equal(results[2].status, "fulfilled");
    assert.equal(results[1].status, "rejected");
    assert.match(String((results[1] as PromiseRejectedResult).reason), /600 new tokens at position 0 exceed the KV cache of 512 positions/);
    const want = await alone.generate(prompts[5], noEos);
    same((results[2] as PromiseFulfilledResult<GenerateResult>).value, want, "prompt 5");
  });

  test("a sequence that reaches the end of its slot stops with stopReason context; the others go on", async () => {
    const long: Prompt = { ids: Array.from({ length: 505 }, (_, i) => (i * 31) % 5000) };
    const [r, other] = await batched.generateBatch([long, prompts[2]], { ...noEos, maxNewTokens: 20 });
    assert.deepEqual([r.ids.length, r.stopReason], [8, "context"]);
    same(other, await alone.generate(prompts[2], { ...noEos, maxNewTokens: 20 }), "the other prompt");
  });
});
