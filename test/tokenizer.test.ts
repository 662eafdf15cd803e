import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { nodeModelDir } from "../src/io/node.ts";
import { StreamDecoder, TextTokenizer, type DecodeOptions } from "../src/text/tokenizer.ts";
import { goldenDir, qwenTokenizerDir } from "./shared-paths.ts";

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
