import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { DEFAULT_REASONING_TOKENS, SearchR3, type Truncation } from "../src/search/searchr3.ts";
import { cdist, cosineMatrix, cosineSimilarity, l2normalize } from "../src/search/similarity.ts";
import { Engine } from "../src/text/engine.ts";
import { TextTokenizer } from "../src/text/tokenizer.ts";
import { qwenTokenizerDir } from "./shared-paths.ts";

// Compiled tests run from dist/test/, two levels below the repository root.
const tinyDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "models", "tiny-qwen2");
const golden = JSON.parse(await readFile(join(tinyDir, "search-golden.json"), "utf8"));
const EMBED_TOKEN_ID = 151665;
const SUFFIX = "\nThe final embedding is: <|embed_token|>";

interface Entry {
  input: string;
  embed_text: string;
  embed_ids: number[];
  embed_token_pos: number;
  hidden: number[];
  hidden_normalized: number[];
  prompt_text?: string;
  prompt_ids?: number[];
  greedy?: { new_tokens: number[]; text: string };
}
const queries: Entry[] = golden.queries;
const documents: Entry[] = golden.documents;

/** Max abs error within 1e-4 x max|ref| (shared/golden/README.md). */
function assertHidden(got: Float32Array, want: number[], what: string): void {
  assert.equal(got.length, want.length, what);
  const maxRef = Math.max(...want.map(Math.abs));
  const err = Math.max(...want.map((w, i) => Math.abs(got[i] - w)));
  assert.ok(err <= 1e-4 * maxRef, `${what}: max abs error ${err} > 1e-4 x ${maxRef}`);
}

const { device } = await nodeGpu();
const r3 = await SearchR3.load(device, nodeModelDir(tinyDir), { model: { maxSeqLen: 2048 } });
const { engine } = r3;
const { model, tokenizer } = engine;

/** A SearchR3 on the same model with other options, recording its warnings. */
function variant(opts: ConstructorParameters<typeof SearchR3>[1]) {
  const warnings: { message: string; truncation: Truncation }[] = [];
  const s = new SearchR3(engine, { ...opts, onWarning: (message, truncation) => warnings.push({ message, truncation }) });
  return { s, warnings };
}

describe("Search-R3 golden (search-golden.json)", () => {
  test("defaults match the golden prompts", () => {
    assert.equal(r3.embedTokenId, EMBED_TOKEN_ID);
    assert.equal(r3.embedTokenId, golden.embed_token.id);
    assert.equal(r3.documentSystem, golden.document_system);
    assert.equal(r3.querySystem, golden.query_system);
    assert.equal(r3.embedPrompt, golden.assistant_prefix);
    assert.equal(r3.embedSuffix, SUFFIX);
    assert.equal(r3.maxLength, 1024);
  });

  for (const [kind, entries] of [["document", documents], ["query", queries]] as const) {
    test(`${kind} prompts, ids and embed position`, () => {
      for (const e of entries) {
        const p = r3.prepare(e.input, kind);
        assert.equal(p.text, e.embed_text);
        assert.deepEqual(p.ids, e.embed_ids);
        assert.equal(p.ids.length - 1, e.embed_token_pos);
        assert.equal(p.ids[e.embed_token_pos], EMBED_TOKEN_ID);
        assert.equal(p.truncation, undefined);
      }
    });

    test(`${kind} hidden states, raw and normalized`, async () => {
      const progress: [number, number][] = [];
      const inputs = entries.map((e) => e.input);
      const raw = await r3.encode(inputs, { kind, normalize: false, onProgress: (done, total) => progress.push([done, total]) });
      assert.deepEqual(progress, [[1, 3], [2, 3], [3, 3]]);
      const normalized = await r3.encode(inputs, { kind });
      entries.forEach((e, i) => {
        assertHidden(raw[i], e.hidden, `${kind} ${i} hidden`);
        assertHidden(normalized[i], e.hidden_normalized, `${kind} ${i} hidden_normalized`);
      });
    });
  }

  for (const batchSize of [1, 2, 3, 6]) {
    test(`encode at batch size ${batchSize}: all six golden texts (queries and documents) in one call`, async () => {
      // Documents and queries differ in prompt, not in kind, once rendered: embed the rendered texts together.
      const entries = [...queries, ...documents];
      const got = await r3.encode(entries.map((e) => e.embed_text), { batchSize });
      entries.forEach((e, i) => assertHidden(got[i], e.hidden_normalized, `text ${i} at batch size ${batchSize}`));
    });
  }

  test("cosine matrix, and cdist consistent with it", async () => {
    const q = await r3.encode(queries.map((e) => e.input), { kind: "query" });
    const d = await r3.encode(documents.map((e) => e.input));
    const cos = cosineMatrix(q, d);
    const dist = cdist(q, d);
    golden.cosine.forEach((row: number[], i: number) => row.forEach((want, j) => {
      assert.ok(Math.abs(cos[i][j] - want) <= 1e-4, `cosine[${i}][${j}]: ${cos[i][j]} vs ${want}`);
      // For unit vectors ||a - b||^2 = 2 - 2 cos.
      assert.ok(Math.abs(dist[i][j] ** 2 - (2 - 2 * want)) <= 1e-4, `cdist[${i}][${j}]`);
    }));
  });

  test("encodeQuery without reasoning is the teacher-forced query embedding", async () => {
    assertHidden(await r3.encodeQuery(queries[1].input), queries[1].hidden_normalized, "query 1");
    assertHidden(await r3.encodeQuery(queries[1].input, { reasoning: false, normalize: false }), queries[1].hidden, "query 1 raw");
  });

  test("generate: the 16-token greedy continuations, then the suffix", async () => {
    const progress: number[] = [];
    const out = await r3.generate(queries.map((e) => e.input), { maxNewTokens: 16, eosTokenIds: [], onProgress: (done) => progress.push(done) });
    assert.deepEqual(progress, [1, 2, 3]);
    // Reasoning one query at a time and two at once gives the same, in query order.
    const byOne = await r3.generate(queries.map((e) => e.input), { maxNewTokens: 16, eosTokenIds: [], batchSize: 1 });
    const byTwo = await r3.generate(queries.map((e) => e.input), { maxNewTokens: 16, eosTokenIds: [], batchSize: 2 });
    for (const other of [byOne, byTwo]) assert.deepEqual(other.map((r) => r.text), out.map((r) => r.text));
    queries.forEach((e, i) => {
      const r = out[i];
      assert.deepEqual(tokenizer.encode(e.prompt_text!), e.prompt_ids);
      assert.equal(r.generation.prefillTokens, e.prompt_ids!.length);
      assert.deepEqual(r.generation.ids, e.greedy!.new_tokens, `query ${i}`);
      assert.equal(r.reasoning, e.greedy!.text);
      assert.equal(r.query, e.input);
      assert.equal(r.emittedEmbedToken, false);
      assert.equal(r.stopReason, "length");
      assert.equal(r.text, e.prompt_text + e.greedy!.text + SUFFIX);
    });
  });
});

describe("Search-R3 behaviour", () => {
  test("encode reads a generated text at its final token, without wrapping it", async () => {
    const [r] = await r3.generate([queries[0].input], { maxNewTokens: 4 });
    const ids = tokenizer.encode(r.text);
    assert.equal(ids.at(-1), EMBED_TOKEN_ID);
    assert.deepEqual(r3.prepare(r.text).ids, ids);
    const [got] = await r3.encode([r.text], { normalize: false });
    model.reset();
    const rows = (await model.prefill(ids, { capture: ["final_norm"] })).captured.get("final_norm")!;
    const H = model.config.hiddenSize;
    assert.deepEqual(got, rows.slice((ids.length - 1) * H));
    assert.deepEqual(await r3.encodeQuery(queries[0].input, { reasoning: true, maxNewTokens: 4 }), l2normalize(got));
  });

  test("generate stops at the embed token when the model emits it", async () => {
    // The random model does not emit <|embed_token|>; "avic" (88445), query 0's first greedy token, stands in for it.
    const { s } = variant({ embedToken: "avic", embedPrompt: "The embedding isavic", embedSuffix: "\nThe final embedding is:avic" });
    assert.equal(s.embedTokenId, 88445);
    const [r] = await s.generate([queries[0].input], { maxNewTokens: 16 });
    assert.equal(r.emittedEmbedToken, true);
    assert.equal(r.stopReason, "embed-token");
    assert.deepEqual(r.generation.ids, [88445]);
    assert.equal(r.reasoning, "");
    assert.equal(r.text, queries[0].prompt_text + "avic");
  });

  test("generation is limited so that prompt, reasoning and suffix fit in maxLength, as encode re-tokenizes them", async () => {
    const { s, warnings } = variant({ maxLength: 40 });
    const suffixTokens = tokenizer.encode(SUFFIX).length;
    const [r] = await s.generate([queries[0].input]);
    assert.equal(queries[0].prompt_ids!.length + r.generation.ids.length + suffixTokens, 40);
    assert.equal(r.stopReason, "length");
    assert.equal(r.emittedEmbedToken, false);
    // Re-encoded, what the model wrote would be one token longer: its reasoning ends in "\r\n", which merges with the
    // suffix's "\n". So generate cuts the reasoning to the longest text that fits, and says so; encode cuts nothing.
    assert.ok(r.generation.text.endsWith("':\r\n"));
    assert.equal(tokenizer.encode(queries[0].prompt_text + r.generation.text + SUFFIX).length, 41);
    assert.equal(r.reasoning, r.generation.text.slice(0, -1));
    assert.equal(r.text, queries[0].prompt_text + r.reasoning + SUFFIX);
    assert.deepEqual(r.truncations, [{ kind: "reasoning", index: 0, tokens: 41, maxLength: 40, cut: 1 }]);
    assert.deepEqual(warnings.map((w) => w.message), [
      "SearchR3: query 0 with its reasoning re-tokenizes to 41 tokens, over maxLength 40; cut the last 1 of the 5 tokens the model wrote",
    ]);
    assert.equal(s.prepare(r.text).ids.length, 39);
    assert.equal(warnings.length, 1, "prepare cuts nothing");
  });

  test("without maxNewTokens, reasoning stops at DEFAULT_REASONING_TOKENS", async () => {
    // 300 leaves room for more than 256 tokens beside the prompt and the suffix, so the cap is what stops it.
    const { s } = variant({ maxLength: 300 });
    const [r] = await s.generate([queries[0].input], { eosTokenIds: [] });
    assert.equal(DEFAULT_REASONING_TOKENS, 256);
    assert.equal(r.generation.ids.length, 256);
    assert.deepEqual([r.stopReason, r.emittedEmbedToken, r.truncations], ["length", false, []]);
    assert.ok(r.reasoning.startsWith(queries[0].greedy!.text));
  });

  test("a long document is truncated in its text, not its template, with a warning saying how much", async () => {
    const { s, warnings } = variant({ maxLength: 40 });
    const doc = documents[0];
    assert.equal(doc.embed_ids.length, 53);
    const p = s.prepare(doc.input, "document", 2);
    assert.equal(p.ids.length, 40);
    assert.equal(warnings.length, 1);
    const textTokens = tokenizer.encode(doc.input).length;
    assert.deepEqual(warnings[0].truncation, { kind: "document", index: 2, tokens: 53, maxLength: 40, cut: 13 });
    assert.match(warnings[0].message, /document 2 is 53 tokens/);
    assert.match(warnings[0].message, new RegExp(`cut the last 13 of its ${textTokens} text tokens`));
    // The template around the text survives whole: the same head and the same tail as the untruncated prompt.
    const head = tokenizer.encode(`<|im_start|>system\n${golden.document_system}<|im_end|>\n<|im_start|>user\n`);
    const tail = tokenizer.encode(`<|im_end|>\n<|im_start|>assistant\n${golden.assistant_prefix}`);
    assert.deepEqual(p.ids.slice(0, head.length), head);
    assert.deepEqual(p.ids.slice(-tail.length), tail);
    assert.deepEqual(p.ids.slice(head.length, -tail.length), tokenizer.encode(doc.input).slice(0, textTokens - 13));
    assert.equal(p.truncation?.cut, 13);

    const [embedding] = await s.encode([doc.input]);
    assert.equal(embedding.length, model.config.hiddenSize);
    assert.equal(warnings.length, 2);
    await s.encode([queries[0].input], { kind: "query" });
    assert.equal(warnings.length, 2, "a text that fits is not truncated");
  });

  test("a text already ending with the embed token keeps its head and its final token", () => {
    const { s, warnings } = variant({ maxLength: 20 });
    const p = s.prepare(documents[1].embed_text);
    assert.deepEqual(p.ids, [...documents[1].embed_ids.slice(0, 19), EMBED_TOKEN_ID]);
    assert.deepEqual(warnings[0].truncation, { kind: "rendered", index: 0, tokens: documents[1].embed_ids.length, maxLength: 20, cut: documents[1].embed_ids.length - 20 });
    assert.match(warnings[0].message, new RegExp(`cut ${documents[1].embed_ids.length - 20} tokens before its final <\\|embed_token\\|>`));
  });

  test("a model whose tokenizer lacks <|embed_token|> is refused with a clear error", async () => {
    const dir = await mkdtemp(join(tmpdir(), "r3gpu-no-embed-"));
    after(() => rm(dir, { recursive: true, force: true }));
    for (const f of ["config.json", "generation_config.json", "model.safetensors"]) await symlink(join(tinyDir, f), join(dir, f));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await symlink(join(qwenTokenizerDir(), f), join(dir, f));
    const message = /has no added token "<\|embed_token\|>".*Search-R3 checkpoint/;
    await assert.rejects(SearchR3.load(device, nodeModelDir(dir)), (e: Error) => {
      assert.match(e.message, message);
      assert.ok(e.message.startsWith(resolve(dir)), e.message);
      return true;
    });
    const stock = await TextTokenizer.load(nodeModelDir(dir));
    assert.throws(() => new SearchR3(new Engine(model, stock, engine.chatTemplate)), message);
  });

  test("bad prompts and limits are refused", () => {
    assert.throws(() => new SearchR3(engine, { embedSuffix: "\nThe final embedding is:" }), /embedSuffix .* must end with <\|embed_token\|>/);
    assert.throws(() => new SearchR3(engine, { embedPrompt: "The embedding is" }), /embedPrompt/);
    assert.throws(() => new SearchR3(engine, { maxLength: 4096 }), /exceeds the model's KV cache of 2048/);
    assert.throws(() => new SearchR3(engine, { maxLength: 5 }), /maxLength 5 must be an integer above/);
  });
});

describe("vector helpers", () => {
  test("l2normalize", () => {
    assert.deepEqual([...l2normalize([3, 4])], [Math.fround(0.6), Math.fround(0.8)]);
    assert.deepEqual([...l2normalize([0, 0])], [0, 0]);
  });

  test("cosine similarity and its matrix", () => {
    assert.equal(cosineSimilarity([1, 0], [0, 2]), 0);
    assert.equal(cosineSimilarity([1, 1], [2, 2]), 1);
    assert.equal(cosineSimilarity([1, 0], [-3, 0]), -1);
    assert.equal(cosineSimilarity([0, 0], [1, 0]), 0);
    assert.ok(Math.abs(cosineSimilarity([1, 2], [2, 1]) - 0.8) < 1e-15);
    assert.deepEqual(cosineMatrix([[1, 0], [0, 1]], [[1, 0], [0, 3], [-1, 0]]), [[1, 0, -1], [0, 1, 0]]);
    assert.throws(() => cosineSimilarity([1], [1, 2]), /different lengths/);
  });

  test("cdist is the Euclidean distance matrix", () => {
    assert.deepEqual(cdist([[0, 0], [1, 1]], [[3, 4], [1, 1]]), [[5, Math.SQRT2], [Math.sqrt(13), 0]]);
  });
});
