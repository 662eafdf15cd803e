import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { Engine, generationDefaults } from "../src/text/engine.ts";
import { generate, generateStream, type GenerateOptions, type GenerateResult, type Prompt } from "../src/text/generate.ts";
import { applyRepetitionPenalty, argmax, drawToken, samplingDistribution, type Distribution } from "../src/text/sampling.ts";
import { mulberry32 } from "../src/util/prng.ts";

// Compiled tests run from dist/test/, two levels below the repository root.
const tinyDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "models", "tiny-qwen2");
const golden = JSON.parse(await readFile(join(tinyDir, "golden.json"), "utf8"));

const close = (got: ArrayLike<number>, want: number[], eps = 1e-12) => {
  assert.equal(got.length, want.length);
  want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) <= eps, `[${i}]: got ${got[i]}, want ${w}`));
};
const softmax = (xs: number[]) => {
  const e = xs.map((x) => Math.exp(x - Math.max(...xs)));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
};

describe("sampling math", () => {
  test("repetition penalty divides positive and multiplies negative logits of seen tokens, once each", () => {
    const logits = Float32Array.from([2, -2, 1, 0.5, 0]);
    applyRepetitionPenalty(logits, [0, 1, 1, 4], 2);
    assert.deepEqual([...logits], [1, -4, 1, 0.5, 0]);
  });

  test("argmax takes the lowest index on ties", () => {
    assert.equal(argmax([1, 5, 5, 2]), 1);
    assert.equal(argmax([-3]), 0);
  });

  test("plain softmax, most likely first", () => {
    const d = samplingDistribution([1, 2, 3, 4]);
    assert.deepEqual([...d.ids], [3, 2, 1, 0]);
    // p(i) = e^i / (e^1 + e^2 + e^3 + e^4)
    const z = 1 + Math.E ** -1 + Math.E ** -2 + Math.E ** -3;
    close(d.probs, [1 / z, Math.E ** -1 / z, Math.E ** -2 / z, Math.E ** -3 / z]);
  });

  test("temperature divides the logits", () => {
    const d = samplingDistribution([1, 2, 3, 4], { temperature: 2 });
    // Logits 0.5, 1, 1.5, 2: neighbours differ by e^0.5.
    const z = 1 + Math.E ** -0.5 + Math.E ** -1 + Math.E ** -1.5;
    close(d.probs, [1 / z, Math.E ** -0.5 / z, Math.E ** -1 / z, Math.E ** -1.5 / z]);
  });

  test("top-k keeps the k largest, renormalized, and ties with the k-th", () => {
    const d = samplingDistribution([1, 2, 3, 4], { topK: 2 });
    assert.deepEqual([...d.ids], [3, 2]);
    close(d.probs, [Math.E / (1 + Math.E), 1 / (1 + Math.E)]); // 0.7311, 0.2689
    const tied = samplingDistribution([1, 3, 3, 2], { topK: 1 });
    assert.deepEqual([...tied.ids], [1, 2]);
    close(tied.probs, [0.5, 0.5]);
  });

  test("top-p keeps tokens while the mass before them is below p", () => {
    // Probabilities 0.6439, 0.2369, 0.0871, 0.0321 (ids 3, 2, 1, 0).
    const p80 = samplingDistribution([1, 2, 3, 4], { topP: 0.8 });
    assert.deepEqual([...p80.ids], [3, 2]); // mass before id 1 is 0.8808 >= 0.8
    close(p80.probs, [Math.E / (1 + Math.E), 1 / (1 + Math.E)]);
    const p90 = samplingDistribution([1, 2, 3, 4], { topP: 0.9 });
    assert.deepEqual([...p90.ids], [3, 2, 1]); // mass before id 1 is 0.8808 < 0.9, before id 0 0.9679
    const z = 1 + Math.E ** -1 + Math.E ** -2;
    close(p90.probs, [1 / z, Math.E ** -1 / z, Math.E ** -2 / z]);
    assert.deepEqual([...samplingDistribution([1, 2, 3, 4], { topP: 0.6 }).ids], [3]); // the most likely stays
  });

  test("top-k, then top-p over what top-k left, after temperature", () => {
    // Top 3 renormalized: 0.6652, 0.2447, 0.0900: the mass before id 1 is 0.9099 >= 0.8.
    assert.deepEqual([...samplingDistribution([1, 2, 3, 4], { topK: 3, topP: 0.8 }).ids], [3, 2]);
    // Temperature 0.5 sharpens to 0.8650 for id 3, which alone reaches p = 0.8.
    const sharp = samplingDistribution([1, 2, 3, 4], { temperature: 0.5, topP: 0.8 });
    assert.deepEqual([...sharp.ids], [3]);
    close(sharp.probs, [1]);
  });

  test("-Infinity and NaN logits are never drawn", () => {
    const d = samplingDistribution([-Infinity, 0, NaN, 0]);
    assert.deepEqual([...d.ids], [1, 3]);
    close(d.probs, [0.5, 0.5]);
    assert.throws(() => samplingDistribution([-Infinity, NaN]), /no finite logit/);
  });

  test("top-p on a large vocabulary equals a full sort", () => {
    const random = mulberry32(7);
    const logits = Float32Array.from({ length: 5000 }, () => (random() - 0.5) * 12);
    for (const [temperature, topP] of [[1, 0.9], [0.7, 0.5], [2, 0.99], [1, 0.01]]) {
      const got = samplingDistribution(logits, { temperature, topP, topK: 0 });
      const p = softmax([...logits].map((v) => v / temperature));
      const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b);
      let n = 0;
      for (let before = 0; n === 0 || before < topP; n++) before += p[order[n]];
      assert.deepEqual([...got.ids], order.slice(0, n), `temperature ${temperature}, topP ${topP}`);
      const kept = order.slice(0, n).reduce((s, id) => s + p[id], 0);
      close(got.probs, order.slice(0, n).map((id) => p[id] / kept), 1e-9);
    }
  });

  test("drawing walks the cumulative probabilities", () => {
    const d: Distribution = { ids: Uint32Array.from([3, 2]), probs: Float64Array.from([0.75, 0.25]) };
    assert.equal(drawToken(d, 0), 3);
    assert.equal(drawToken(d, 0.7499), 3);
    assert.equal(drawToken(d, 0.75), 2);
    assert.equal(drawToken(d, 0.999999), 2);
  });

  test("the PRNG repeats for a seed and stays in [0, 1)", () => {
    const a = mulberry32(42), b = mulberry32(42), c = mulberry32(43);
    const xs = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(Array.from({ length: 1000 }, () => b()), xs);
    assert.notDeepEqual(Array.from({ length: 1000 }, () => c()), xs);
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  });

  test("generation_config.json fields become defaults", () => {
    assert.deepEqual(
      generationDefaults({ do_sample: true, temperature: 0.7, top_k: 20, top_p: 0.8, repetition_penalty: 1.05, max_new_tokens: 512, eos_token_id: [1, 2] }),
      { doSample: true, temperature: 0.7, topK: 20, topP: 0.8, repetitionPenalty: 1.05, maxNewTokens: 512 },
    );
    assert.deepEqual(generationDefaults({ do_sample: false, bos_token_id: 1 }), { doSample: false });
  });
});

const { device } = await nodeGpu();
const engine = await Engine.load(device, nodeModelDir(tinyDir), { maxSeqLen: 2048 });
const { model, tokenizer } = engine;
const seq = golden.sequences[1];
const prompt: Prompt = { ids: seq.input_ids };
const want: number[] = seq.greedy.new_tokens;
const noEos: GenerateOptions = { eosTokenIds: [] };
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

async function drain(stream: AsyncGenerator<string, GenerateResult>): Promise<{ chunks: string[]; result: GenerateResult }> {
  const chunks: string[] = [];
  for (;;) {
    const r = await stream.next();
    if (r.done) return { chunks, result: r.value };
    chunks.push(r.value);
  }
}

describe("generate on tiny-qwen2", () => {
  test("greedy reproduces golden.json's 20 new tokens", async () => {
    const r = await generate(model, tokenizer, prompt, { ...noEos, maxNewTokens: 20 });
    assert.deepEqual(r.ids, want);
    assert.equal(r.stopReason, "length");
    assert.equal(r.text, tokenizer.decode(want));
    assert.equal(r.prefillTokens, seq.input_ids.length);
    assert.equal(r.decodeTokens, 19);
    assert.ok(r.prefillTokPerS > 0 && r.decodeTokPerS > 0);
    assert.equal(r.seed, undefined);
  });

  test("an abort signal ends generation before the next token, with the tokens so far", async () => {
    const controller = new AbortController();
    const stream = generateStream(model, tokenizer, prompt, { ...noEos, maxNewTokens: 20, signal: controller.signal });
    let chunks = 0;
    for (;;) {
      const r = await stream.next();
      if (r.done) {
        assert.equal(r.value.stopReason, "aborted");
        assert.ok(r.value.ids.length < 20, `${r.value.ids.length} tokens after the abort`);
        assert.deepEqual(r.value.ids, want.slice(0, r.value.ids.length));
        break;
      }
      chunks++;
      controller.abort();
    }
    assert.ok(chunks >= 1);
  });

  test("top-k = 1 sampling is greedy", async () => {
    const r = await generate(model, tokenizer, prompt, { ...noEos, maxNewTokens: 20, doSample: true, topK: 1, temperature: 0.7, seed: 3 });
    assert.deepEqual(r.ids, want);
  });

  test("seeded sampling is reproducible", async () => {
    const opts = { ...noEos, maxNewTokens: 8, doSample: true, topK: 50, topP: 0.95, temperature: 1.2 };
    const a = await generate(model, tokenizer, prompt, { ...opts, seed: 1 });
    const b = await generate(model, tokenizer, prompt, { ...opts, seed: 1 });
    const c = await generate(model, tokenizer, prompt, { ...opts, seed: 2 });
    assert.equal(a.seed, 1);
    assert.deepEqual(b.ids, a.ids);
    assert.notDeepEqual(c.ids, a.ids);
    assert.notDeepEqual(a.ids, want.slice(0, 8));
    const unseeded = await generate(model, tokenizer, prompt, opts);
    assert.equal(typeof unseeded.seed, "number");
    assert.deepEqual((await generate(model, tokenizer, prompt, { ...opts, seed: unseeded.seed })).ids, unseeded.ids);
  });

  test("repetition penalty applies to greedy decoding too", async () => {
    const ids: number[] = golden.sequences[0].input_ids;
    const plain = await generate(model, tokenizer, { ids }, { ...noEos, maxNewTokens: 4 });
    assert.deepEqual(plain.ids, [64986, 64986, 64986, 64986]);
    const r = await generate(model, tokenizer, { ids }, { ...noEos, maxNewTokens: 4, repetitionPenalty: 2 });
    model.reset();
    const logits = (await model.prefill(ids, { logits: true })).logits!;
    applyRepetitionPenalty(logits, ids, 2);
    assert.equal(r.ids[0], argmax(logits));
    assert.ok(r.ids.slice(1).every((id) => id !== r.ids[0]), `a penalized token came back: ${r.ids}`);
  });

  test("a stop id ends generation and stays out of the text", async () => {
    const r = await generate(model, tokenizer, prompt, { ...noEos, maxNewTokens: 20, stopIds: [want[5]] });
    assert.deepEqual(r.ids, want.slice(0, 6));
    assert.equal(r.stopReason, "stop-id");
    assert.equal(r.stopId, want[5]);
    assert.equal(r.text, tokenizer.decode(want.slice(0, 5)));
  });

  test("EOS ids default to the model's, and can be replaced", async () => {
    assert.deepEqual(model.config.eosTokenIds, [151643]);
    const r = await generate(model, tokenizer, prompt, { maxNewTokens: 20, eosTokenIds: [want[3]] });
    assert.deepEqual(r.ids, want.slice(0, 4));
    assert.equal(r.stopReason, "eos");
    assert.equal(r.stopId, want[3]);
  });

  test("maxNewTokens and a full KV cache", async () => {
    const r = await generate(model, tokenizer, prompt, { maxNewTokens: 4 });
    assert.deepEqual(r.ids, want.slice(0, 4));
    assert.equal(r.stopReason, "length");
    const none = await generate(model, tokenizer, prompt, { maxNewTokens: 0 });
    assert.deepEqual([none.ids, none.text, none.stopReason, none.prefillTokens], [[], "", "length", 0]);

    // 7 prompt tokens in 10 positions leave room for 4 new tokens (the last one is never fed back).
    const small = await Engine.load(device, nodeModelDir(tinyDir), { maxSeqLen: 10 });
    const full = await small.generate(prompt, { maxNewTokens: 20 });
    assert.deepEqual(full.ids, want.slice(0, 4));
    assert.equal(full.stopReason, "context");
    await assert.rejects(small.generate({ ids: new Array(11).fill(1) }), /exceed the KV cache/);
  });

  test("a stop string cuts the text, even across tokens, and the stream never shows it", async () => {
    // want decodes to "榧 którzy tum חש本身的 Shiaaid[#כנות..."; "aid[#" spans the tokens "aid" and "[#".
    const whole = tokenizer.decode(want);
    const stop = "aid[#";
    const { chunks, result } = await drain(generateStream(model, tokenizer, prompt, { ...noEos, maxNewTokens: 20, stopStrings: ["nope", stop] }));
    assert.equal(result.stopReason, "stop-string");
    assert.equal(result.stopString, stop);
    assert.equal(result.text, whole.slice(0, whole.indexOf(stop)));
    assert.equal(result.text, "榧 którzy tum חש本身的 Shia");
    assert.deepEqual(result.ids, want.slice(0, 8));
    assert.equal(chunks.join(""), result.text);

    const first = await generate(model, tokenizer, prompt, { ...noEos, stopStrings: ["榧"] });
    assert.deepEqual([first.ids, first.text, first.stopReason], [want.slice(0, 1), "", "stop-string"]);
  });

  test("the stream's chunks join to the text, whole characters only", async () => {
    const { chunks, result } = await drain(generateStream(model, tokenizer, prompt, { ...noEos, maxNewTokens: 20 }));
    assert.deepEqual(result.ids, want);
    assert.equal(chunks.join(""), result.text);
    assert.ok(chunks.length > 1);
    for (const chunk of chunks) assert.doesNotMatch(chunk, LONE_SURROGATE);
  });

  test("messages are rendered with the chat template and a generation prompt", async () => {
    const messages = [{ role: "user", content: "Hello!" }];
    const r = await engine.generate(messages, { maxNewTokens: 2 });
    const ids = tokenizer.encode(engine.chatTemplate!.render(messages, { addGenerationPrompt: true }));
    assert.ok(tokenizer.decode(ids).endsWith("<|im_start|>assistant\n"));
    assert.equal(r.prefillTokens, ids.length);
    assert.deepEqual(r.ids, (await generate(model, tokenizer, { ids }, { maxNewTokens: 2 })).ids);
    const raw = await generate(model, tokenizer, "Hello!", { maxNewTokens: 1 });
    assert.equal(raw.prefillTokens, tokenizer.encode("Hello!").length);
  });

  test("bad options are refused", async () => {
    await assert.rejects(generate(model, tokenizer, prompt, { doSample: true, topP: 0 }), /topP must be in \(0, 1\]/);
    await assert.rejects(generate(model, tokenizer, prompt, { topK: -1 }), /topK/);
    await assert.rejects(generate(model, tokenizer, prompt, { repetitionPenalty: 0 }), /repetitionPenalty/);
    await assert.rejects(generate(model, tokenizer, prompt, { maxNewTokens: 1.5 }), /maxNewTokens/);
  });
});
