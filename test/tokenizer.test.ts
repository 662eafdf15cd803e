import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { raw, stringify } from "../fuzz/mutators/json.ts";
import { CATASTROPHIC_PATTERNS, PUBLISHED_PATTERNS } from "../fuzz/mutators/tokenizer.ts";
import { miniTokenizer } from "../fuzz/seeds.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { DEFAULT_MAX_INPUT_CHARS, StreamDecoder, TextTokenizer, TokenizerInputError, type DecodeOptions } from "../src/text/tokenizer.ts";
import { goldenDir, qwenTokenizerDir, repoRoot } from "./shared-paths.ts";

interface Case {
  text: string;
  ids: number[];
  decoded: string;
}

const readJsonFile = async (path: string) => JSON.parse(await readFile(path, "utf8"));
const tinyDir = join(goldenDir(), "tiny-public");
const cases: Case[] = await readJsonFile(join(goldenDir(), "tokenizer", "cases.json"));
const search = await readJsonFile(join(tinyDir, "search-golden.json"));
const qwen = await TextTokenizer.load(nodeModelDir(qwenTokenizerDir()), { from: "vocab-merges" });
const tiny = await TextTokenizer.load(nodeModelDir(tinyDir));

const EMBED_TOKEN = "<|embed_token|>";
const EMBED_TOKEN_ID = 151665;

function label(i: number, text: string): string {
  return `case ${i}: ${JSON.stringify(text.length > 24 ? `${text.slice(0, 24)}...` : text)}`;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Feeds ids one at a time; checks the chunks join to `expected` and none holds half a character. */
function checkStream(tok: TextTokenizer, ids: number[], expected: string, opts: DecodeOptions = {}): void {
  const stream = new StreamDecoder(tok, opts);
  const chunks = ids.map((id) => stream.push(id));
  chunks.push(stream.flush());
  // Joining to exactly `expected` also means every U+FFFD in a chunk is one the complete text has at that place.
  assert.equal(chunks.join(""), expected);
  for (const chunk of chunks) assert.doesNotMatch(chunk, LONE_SURROGATE);
}

describe("Qwen2.5 tokenizer built from vocab.json + merges.txt", () => {
  cases.forEach((c, i) => {
    test(label(i, c.text), () => {
      assert.deepEqual(qwen.encode(c.text), c.ids);
      assert.equal(qwen.decode(c.ids), c.decoded);
      checkStream(qwen, c.ids, c.decoded);
    });
  });

  test("special tokens and sizes", () => {
    assert.equal(qwen.vocabSize, 151665);
    assert.equal(qwen.tokenId("<|im_end|>"), 151645);
    assert.equal(qwen.eosTokenId, 151645);
    assert.equal(qwen.tokenId(EMBED_TOKEN), undefined);
    assert.ok(qwen.chatTemplate?.includes("<|im_start|>"));
  });
});

describe("tiny-public tokenizer.json (Qwen2.5 + <|embed_token|>)", () => {
  cases.forEach((c, i) => {
    test(label(i, c.text), () => {
      // The golden treats <|embed_token|> as plain text (stock Qwen2.5); here it is one special token.
      const expected = c.text.includes(EMBED_TOKEN)
        ? c.text.split(EMBED_TOKEN).flatMap((part, j) => [...(j > 0 ? [EMBED_TOKEN_ID] : []), ...qwen.encode(part)])
        : c.ids;
      const ids = tiny.encode(c.text);
      assert.deepEqual(ids, expected);
      assert.equal(tiny.decode(ids), c.decoded);
      checkStream(tiny, ids, c.decoded);
    });
  });

  test("<|embed_token|> is one special token, id 151665", async () => {
    const config = await readJsonFile(join(tinyDir, "tokenizer_config.json"));
    const entry = config.added_tokens_decoder[String(EMBED_TOKEN_ID)];
    assert.equal(entry.content, EMBED_TOKEN);
    assert.equal(entry.special, true);
    assert.equal(tiny.tokenId(EMBED_TOKEN), EMBED_TOKEN_ID);
    assert.deepEqual(tiny.encode(EMBED_TOKEN), [EMBED_TOKEN_ID]);
    assert.equal(tiny.decode([EMBED_TOKEN_ID]), EMBED_TOKEN);
    assert.equal(tiny.decode([EMBED_TOKEN_ID], { skipSpecialTokens: true }), "");
    assert.equal(tiny.vocabSize, EMBED_TOKEN_ID + 1);
    assert.equal(tiny.eosTokenId, 151645);
  });

  test("Search-R3 embed texts encode to the golden ids", () => {
    for (const item of [...search.queries, ...search.documents]) {
      const ids = tiny.encode(item.embed_text);
      assert.deepEqual(ids, item.embed_ids);
      assert.equal(ids[item.embed_token_pos], EMBED_TOKEN_ID);
    }
  });

  test("ids without a token (vocab padding) are skipped when decoding and streaming", () => {
    const hello = tiny.encode("Hello world");
    assert.equal(tiny.hasToken(151900), false);
    assert.equal(tiny.decode([151900]), "");
    assert.equal(tiny.decode([...hello, 151900]), "Hello world");
    assert.equal(tiny.decode([]), "");
    for (const q of search.queries) {
      const { new_tokens, text } = q.greedy;
      assert.equal(tiny.decode(new_tokens), text);
      checkStream(tiny, new_tokens, text);
    }
  });
});

test("a folder without tokenizer files is an error naming it and the files looked for", async () => {
  const dir = join(goldenDir(), "small-public");
  await assert.rejects(TextTokenizer.load(nodeModelDir(dir)), (e: Error) => {
    assert.ok(e.message.includes(dir));
    assert.ok(e.message.includes("tokenizer.json") && e.message.includes("merges.txt"));
    return true;
  });
});

describe("StreamDecoder", () => {
  test("holds back the bytes of an emoji until it is complete", () => {
    // Qwen2.5 has no merged token for these, so each is split over byte-level tokens.
    const ids = qwen.encode("a🪐🫠b");
    const stream = new StreamDecoder(qwen);
    const chunks = ids.map((id) => stream.push(id));
    assert.ok(ids.length >= 8, "expected each emoji to span several byte-level tokens");
    assert.ok(chunks.filter((c) => c === "").length >= 4, "expected held-back chunks");
    assert.equal(chunks.join("") + stream.flush(), "a🪐🫠b");
    assert.ok(chunks.every((c) => !c.includes("\uFFFD")));
  });

  test("a truncated character is emitted as U+FFFD only by flush", () => {
    const [first] = qwen.encode("🪐");
    const stream = new StreamDecoder(qwen);
    assert.equal(stream.push(first!), "");
    assert.equal(stream.flush(), qwen.decode([first!]));
    assert.ok(qwen.decode([first!]).endsWith("\uFFFD"));
  });

  test("random byte soup streams to exactly what decode gives", () => {
    // Mostly single bytes (lone continuations, unfinished lead bytes, ASCII) so that characters break across ids,
    // plus whole tokens, a special token and a padding id.
    const byteIds = [...Array(256).keys()].map((b) => qwen.tokenId(byteLevelChar(b))!);
    const imEnd = qwen.tokenId("<|im_end|>")!;
    let seed = 12345;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let run = 0; run < 300; run++) {
      const ids = Array.from({ length: 1 + random(40) }, () => {
        const pick = random(20);
        if (pick < 12) return byteIds[0x80 + random(128)]!;
        if (pick < 15) return byteIds[0x20 + random(95)]!;
        if (pick < 18) return random(151643);
        return pick === 18 ? imEnd : 151900;
      });
      for (const opts of [{}, { skipSpecialTokens: true }]) checkStream(qwen, ids, qwen.decode(ids, opts), opts);
    }
  });
});

/** The printable character GPT-2 byte-level BPE uses for byte `b`. */
function byteLevelChar(b: number): string {
  const printable = (x: number) => (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
  if (printable(b)) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCharCode(256 + n);
}

describe("hostile tokenizer files", () => {
  const made: string[] = [];
  after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** A folder with the fuzz seed tokenizer (512 ids, Qwen2.5's pre-tokenizer and template), edited. */
  function miniDir(edit: (tokenizer: Record<string, any>, config: Record<string, any>) => void = () => {}): string {
    const dir = mkdtempSync(join(tmpdir(), "r3gpu-tokenizer-"));
    made.push(dir);
    const { tokenizer, config } = miniTokenizer();
    edit(tokenizer, config);
    writeFileSync(join(dir, "tokenizer.json"), stringify(tokenizer));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    return dir;
  }
  const load = (dir: string, opts = {}) => TextTokenizer.load(nodeModelDir(dir), opts);
  const rejects = (dir: string, file: string, pattern: RegExp) =>
    assert.rejects(load(dir), (e: Error) => {
      assert.ok(e.message.startsWith(join(dir, file)), e.message);
      assert.match(e.message, pattern);
      return true;
    });

  test("the seed itself loads and encodes", async () => {
    const tok = await load(miniDir());
    assert.equal(tok.vocabSize, 535);
    assert.deepEqual(tok.encode("<|im_end|>"), [514]);
    assert.equal(tok.decode(tok.encode("Hello, wörld")), "Hello, wörld");
  });

  // The library sizes an array by the largest id and loops over it: these hung it.
  test("an id of 2^31 in the vocabulary, or an added-token id of 10^9, is refused at once", { timeout: 20_000 }, async () => {
    await rejects(miniDir((t) => (t.model.vocab.a = 2 ** 31)), "tokenizer.json",
      /vocabulary token "a" has id 2147483648, far past the 535 tokens of the vocabulary \(ids must stay below 1326\)/);
    await rejects(miniDir((t) => (t.added_tokens[0].id = 1e9)), "tokenizer.json",
      /added token "<\|endoftext\|>" has id 1000000000, far past the 535 tokens/);
    await rejects(miniDir((t) => (t.added_tokens[1].id = -1)), "tokenizer.json", /added token "<\|im_start\|>" has id -1, not a non-negative integer/);
  });

  test("ids past the model's embedding are refused against config.json's vocab_size", async () => {
    const tok = await load(miniDir());
    tok.checkFitsModel(535, "m");
    assert.throws(() => tok.checkFitsModel(520, "m"), /tokenizer\.json: token id 534 is past the vocab_size 520 of m\/config\.json/);
  });

  test("a pre-tokenizer pattern that backtracks exponentially is refused, naming the file and the pattern", { timeout: 20_000 }, async () => {
    for (const pattern of CATASTROPHIC_PATTERNS) {
      await rejects(miniDir((t) => (t.pre_tokenizer.pretokenizers[0].pattern = { Regex: pattern })), "tokenizer.json",
        new RegExp(`pre_tokenizer Split: pattern ${escapeRegExp(JSON.stringify(pattern))} repeats a group that holds a repetition or an alternation`));
    }
    // Published tokenizers' patterns load (Qwen2.5's is the seed's own), and split as they should.
    for (const pattern of PUBLISHED_PATTERNS) {
      const tok = await load(miniDir((t) => (t.pre_tokenizer.pretokenizers[0].pattern = { Regex: pattern })));
      assert.equal(tok.decode(tok.encode("It's 2024, ok?")), "It's 2024, ok?");
    }
  });

  test("components nested 5000 deep, or rules that could lengthen text 1001-fold, are refused", async () => {
    // Written as text: JSON.stringify itself runs out of stack on it.
    await rejects(miniDir((t) => {
      t.pre_tokenizer = raw('{"type":"Sequence","pretokenizers":['.repeat(5000) + JSON.stringify(t.pre_tokenizer) + "]}".repeat(5000));
    }), "tokenizer.json", /pre_tokenizer is nested more than 32 levels deep/);
    await rejects(miniDir((t) => (t.normalizer = { type: "Replace", pattern: { Regex: "." }, content: "x".repeat(1000) })), "tokenizer.json",
      /normalizer Replace: its rules could make a text 1001 times longer \(at most 16 is taken\)/);
    // Metaspace's usual replacement of " " by "▁" lengthens nothing.
    const tok = await load(miniDir((t) => (t.normalizer = { type: "Replace", pattern: { String: " " }, content: "▁" })));
    assert.ok(tok.encode("a b").length > 0);
  });

  test("errors of the library and fields of the wrong type name the file", async () => {
    await rejects(miniDir((t) => (t.normalizer = { type: "Nope" })), "tokenizer.json", /Unknown Normalizer type: Nope/);
    await rejects(miniDir((t) => (t.model.merges = 5)), "tokenizer.json", /./);
    await rejects(miniDir((t) => (t.pre_tokenizer.pretokenizers[0].pattern = {})), "tokenizer.json", /pre_tokenizer Split: pattern must be/);
    await rejects(miniDir((t) => (t.added_tokens[2].content = 7)), "tokenizer.json", /added token must be a string of at most 1024 characters, got 7/);
    await rejects(miniDir((_, c) => (c.additional_special_tokens = "x")), "tokenizer_config.json", /additional_special_tokens must be a list, got "x"/);
    await rejects(miniDir((_, c) => (c.clean_up_tokenization_spaces = "false")), "tokenizer_config.json",
      /clean_up_tokenization_spaces must be true or false, got "false"/);
    await rejects(miniDir((_, c) => (c.chat_template = [{ name: "default", template: 5 }])), "tokenizer_config.json", /chat_template lists/);
  });

  test("encode refuses a text over maxInputChars, and a word too long for BPE, quickly", async () => {
    const tok = await load(miniDir(), { maxInputChars: 100 });
    assert.equal(tok.maxInputChars, 100);
    assert.deepEqual(tok.encode("a".repeat(100)).length > 0, true);
    assert.throws(() => tok.encode("a".repeat(101)), /^Error: encode: the text has 101 characters, more than the 100 the tokenizer takes$/);
    // One word of a million letters took 17 s and 0.8 GB in BPE; it is refused before BPE sees it.
    const big = await load(miniDir());
    const started = Date.now();
    assert.throws(() => big.encode("a".repeat(1_000_000)), (e: Error) => {
      assert.ok(e instanceof TokenizerInputError);
      assert.match(e.message, /^encode: the text holds a run of 1000000 characters that the pre-tokenizer does not split .* more than the 20000/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000, `refusing took ${Date.now() - started} ms`);
    assert.equal(DEFAULT_MAX_INPUT_CHARS, 1 << 20);
    await assert.rejects(load(miniDir(), { maxInputChars: 0 }), /maxInputChars must be a positive integer, got 0/);
  });

  test("r3gpu tokenize refuses an over-long line by its number, in a process with a 256 MB heap", () => {
    const input = `${JSON.stringify({ text: "ok" })}\n${JSON.stringify({ text: "a".repeat(1_000_000) })}\n`;
    const run = spawnSync(process.execPath, ["--max-old-space-size=256", join(repoRoot, "bin", "r3gpu.js"), "tokenize", miniDir()],
      { input, encoding: "utf8", timeout: 60_000 });
    assert.equal(run.status, 1, run.stderr);
    assert.equal(JSON.parse(run.stdout.trim()).decoded, "ok");
    assert.match(run.stderr, /stdin line 2: encode: the text holds a run of 1000000 characters/);
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
