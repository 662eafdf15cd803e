// Corpus reading and chunking, the LanceDB index (resume after SIGKILL, replacement of changed documents, refusal of
// other models and prompts), `r3gpu search` and `r3gpu eval` end to end on models/tiny-qwen2 and the BEIR fixture in
// test/fixtures/beir-tiny. The model's weights are random, so scores mean nothing: the tests check the pipeline and
// the arithmetic.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import * as lancedb from "@lancedb/lancedb";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import { chunkText, documentText, readCorpus, type Document } from "../src/search/corpus.ts";
import { parseQrels, readBeir, runQueries } from "../src/search/eval.ts";
import { indexCorpus } from "../src/search/indexing.ts";
import { searchQuery } from "../src/search/query.ts";
import { indexSettings, modelIdentity, resolveChunking, searchR3Options } from "../src/search/settings.ts";
import { SearchIndex } from "../src/search/store.ts";
import { evaluateRun, rankDocuments } from "../src/search/metrics.ts";
import { SearchR3 } from "../src/search/searchr3.ts";
import { cosineSimilarity } from "../src/search/similarity.ts";
import { Engine } from "../src/text/engine.ts";
import { embeddedModelDir, repoRoot } from "./shared-paths.ts";

const tinyDir = embeddedModelDir();
const fixture = resolve(repoRoot, "test", "fixtures", "beir-tiny");
const cli = resolve(repoRoot, "bin", "r3gpu.js");
const MAX_LENGTH = "64";
const work = await mkdtemp(join(tmpdir(), "r3gpu-search-"));
after(() => rm(work, { recursive: true, force: true }));

const exec = promisify(execFile);
/** Runs the CLI; resolves with its exit code and output whether or not it succeeds. */
async function r3gpu(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [cli, ...args], { timeout: 300_000, maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout: string; stderr: string };
    return { code: err.code ?? -1, stdout: err.stdout, stderr: err.stderr };
  }
}

const { device } = await nodeGpu();
const dir = nodeModelDir(tinyDir);
const engine = await Engine.load(device, dir, { maxSeqLen: Number(MAX_LENGTH) });
const { tokenizer } = engine;
const r3 = new SearchR3(engine, { maxLength: Number(MAX_LENGTH) });
const identity = await modelIdentity(dir);
const settings = indexSettings(r3, identity, resolveChunking(r3));

async function collect(path: string): Promise<Document[]> {
  const out: Document[] = [];
  for await (const doc of readCorpus(path)) out.push(doc);
  return out;
}

interface Row {
  doc_id: string;
  chunk: number;
  offset: number;
  tokens: number;
  text: string;
  title: string | null;
  source: string;
  doc_hash: string;
  vector: number[];
}

/** Every chunk row of the index at `db`, by document and chunk. */
async function readRows(db: string): Promise<Row[]> {
  const table = await (await lancedb.connect(db)).openTable("chunks");
  const rows = (await table.query().toArray()).map((r) => ({ ...r, vector: Array.from(r.vector as ArrayLike<number>) }) as Row);
  return rows.sort((a, b) => (a.doc_id < b.doc_id ? -1 : a.doc_id > b.doc_id ? 1 : a.chunk - b.chunk));
}

function assertEachChunkOnce(rows: Row[]): void {
  const keys = rows.map((r) => `${r.doc_id}#${r.chunk}`);
  assert.equal(new Set(keys).size, keys.length, "a chunk is stored twice");
}

function assertSameRows(got: Row[], want: Row[]): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    const { vector: gv, ...gRest } = g;
    const { vector: wv, ...wRest } = want[i];
    assert.deepEqual(gRest, wRest);
    assert.ok(gv.every((x, j) => Math.abs(x - wv[j]) <= 1e-6), `${g.doc_id}#${g.chunk}: vectors differ`);
  });
}

describe("corpus", () => {
  test("a folder: .txt and .md files at any depth, ids relative with /, in code-unit order", async () => {
    const folder = join(work, "folder");
    await mkdir(join(folder, "sub", "deeper"), { recursive: true });
    await writeFile(join(folder, "b.txt"), "bee");
    await writeFile(join(folder, "a.MD"), "# A");
    await writeFile(join(folder, "notes.json"), "{}");
    await writeFile(join(folder, "sub", "deeper", "c.md"), "sea");
    const docs = await collect(folder);
    assert.deepEqual(docs.map((d) => [d.id, d.text]), [["a.MD", "# A"], ["b.txt", "bee"], ["sub/deeper/c.md", "sea"]]);
    assert.equal(docs[2].source, join(folder, "sub", "deeper", "c.md"));
  });

  test("JSONL with id or _id, optional title, and errors that name the line", async () => {
    const file = join(work, "docs.jsonl");
    await writeFile(file, '{"id":"x","text":"one","title":"T"}\n\n{"_id":7,"text":"two","title":null}\n');
    assert.deepEqual(await collect(file), [
      { id: "x", title: "T", text: "one", source: `${file}:1` },
      { id: "7", title: undefined, text: "two", source: `${file}:3` },
    ]);
    await writeFile(file, '{"id":"x","text":"one"}\n{"id":"y"}\n');
    await assert.rejects(collect(file), new RegExp(`${file}:2: no "text" string`));
    await writeFile(file, "{nope\n");
    await assert.rejects(collect(file), /:1: invalid JSON/);
    await writeFile(file, "\uFEFF[1]\n");
    await assert.rejects(collect(file), /:1: not a JSON object/);
  });

  test("a BEIR folder is read from its corpus.jsonl; the title goes on a line before the text", async () => {
    const docs = await collect(fixture);
    assert.equal(docs.length, 12);
    assert.equal(docs[0].id, "d01");
    assert.equal(documentText(docs[0]), `${docs[0].title}\n${docs[0].text}`);
    assert.equal(documentText(docs[2]), docs[2].text);
  });

  test("chunks are exact, overlapping slices of the text within the token budget", () => {
    // Multi-byte characters (CJK, an emoji that spans several tokens) must never be cut in half.
    const text = "Chunking keeps whole characters: 日本語のテキスト 👩‍👩‍👧 and accents é à ü. ".repeat(12).normalize("NFC");
    for (const [max, overlap] of [[16, 4], [7, 0], [40, 39]]) {
      const chunks = chunkText(tokenizer, text, max, overlap);
      assert.ok(chunks.length > 1);
      chunks.forEach((c, i) => {
        assert.equal(c.index, i);
        assert.equal(text.slice(c.offset, c.offset + c.text.length), c.text, `chunk ${i} is a slice`);
        assert.ok(!c.text.includes("\uFFFD"));
        assert.equal(c.tokens, tokenizer.encode(c.text).length);
        assert.ok(c.tokens <= max, `chunk ${i}: ${c.tokens} tokens > ${max}`);
        if (i > 0) {
          const prev = chunks[i - 1];
          assert.ok(c.offset > prev.offset, "progress");
          assert.ok(c.offset <= prev.offset + prev.text.length, "no gap");
          if (overlap > 0) assert.ok(c.offset < prev.offset + prev.text.length, "overlap");
        }
      });
      assert.equal(chunks.at(-1)!.offset + chunks.at(-1)!.text.length, text.length, "the end is covered");
    }
    assert.deepEqual(chunkText(tokenizer, "short", 16, 2), [{ index: 0, text: "short", offset: 0, tokens: 1 }]);
    assert.throws(() => chunkText(tokenizer, text, 8, 8), /overlap/);
  });
});

describe("index, search and eval on the BEIR fixture", () => {
  const db = join(work, "beir-db");
  const json = join(work, "eval.json");
  let evalRun: { code: number; stdout: string; stderr: string };

  test("r3gpu eval (with query reasoning) indexes, queries and reports the metrics of its run", async () => {
    evalRun = await r3gpu("eval", tinyDir, "--beir", fixture, "--db", db, "--json", json, "--max-length", MAX_LENGTH, "--max-new-tokens", "4");
    assert.equal(evalRun.code, 0, evalRun.stderr);
    const out = JSON.parse(await readFile(json, "utf8"));
    assert.deepEqual(Object.keys(out), ["metrics", "run"]);
    // q5 has no judgments, so it is not run.
    assert.deepEqual(Object.keys(out.run), ["q1", "q2", "q3", "q4"]);
    for (const scores of Object.values<Record<string, number>>(out.run)) {
      assert.equal(Object.keys(scores).length, 12, "every document, since the corpus is smaller than 100");
    }
    const qrels = parseQrels(await readFile(join(fixture, "qrels", "test.tsv"), "utf8"));
    const { metrics } = evaluateRun(qrels, out.run);
    assert.deepEqual(out.metrics, metrics);
    // With every document retrieved, recall@100 does not depend on the scores: q1 and q2 find both of their
    // relevant documents, q3 has none, q4 one of two (d99 is not in the corpus).
    assert.equal(metrics["recall@100"], (1 + 1 + 0 + 0.5) / 4);
    for (const [name, value] of Object.entries(metrics)) {
      assert.match(evalRun.stdout, new RegExp(`^${name.replace(".", "\\.")} +${value.toFixed(4)}$`, "m"));
    }
    assert.match(evalRun.stdout, /\(4 queries, split test, 12 documents in \d+ chunks, query reasoning on\)/);
    const svg = await readFile(join(work, "eval.svg"), "utf8");
    assert.equal([...svg.matchAll(/<rect /g)].length, 4);
  });

  test("the library: a document scores as its best chunk, exactly as a scan of the stored vectors gives", async () => {
    const index = await SearchIndex.open(db);
    index.checkModel(identity);
    assert.deepEqual(index.settings, settings);
    const rows = await readRows(db);
    assert.ok(rows.filter((r) => r.doc_id === "d12").length > 2, "the long document is split");
    assertEachChunkOnce(rows);
    const { queries } = await readBeir(fixture);
    for (const q of queries) {
      const vector = await r3.encodeQuery(q.text);
      const best: Record<string, number> = {};
      for (const r of rows) best[r.doc_id] = Math.max(best[r.doc_id] ?? -Infinity, cosineSimilarity(vector, r.vector));
      const { hits, reasoning } = await searchQuery(r3, index, q.text, { reasoning: false, k: 5 });
      assert.equal(reasoning, undefined);
      assert.deepEqual(hits.map((h) => h.id), rankDocuments(best).slice(0, 5), q.id);
      for (const h of hits) {
        assert.ok(Math.abs(h.score - best[h.id]) < 1e-5, `${q.id} ${h.id}: ${h.score} vs ${best[h.id]}`);
        const chunk = rows.find((r) => r.doc_id === h.id && r.chunk === h.chunk)!;
        assert.equal(h.text, chunk.text);
        assert.equal(h.source, `${join(fixture, "corpus.jsonl")}:${Number(h.id.slice(1))}`);
      }
      assert.deepEqual(await index.search(vector, 5, { exact: true }), hits);
    }
    const run = await runQueries(r3, index, queries.slice(0, 2), { reasoning: false, depth: 3 });
    assert.deepEqual(Object.keys(run), ["q1", "q2"]);
    assert.equal(Object.keys(run.q1).length, 3);
  });

  test("from annMinRows chunks an ANN index is built, and its tuned queries find what the exact scan finds", async () => {
    const index = await SearchIndex.open(join(work, "ann-db"), { create: settings });
    assert.equal((await indexCorpus(r3, index, fixture)).annIndex, false, "15 chunks are below ANN_MIN_ROWS");
    assert.equal((await indexCorpus(r3, index, fixture, { annMinRows: 10 })).annIndex, true);
    assert.equal(await index.hasAnnIndex(), true);
    for (const q of (await readBeir(fixture)).queries) {
      const vector = await r3.encodeQuery(q.text);
      const [ann, exact] = [await index.search(vector, 5), await index.search(vector, 5, { exact: true })];
      assert.deepEqual(ann.map((h) => h.id), exact.map((h) => h.id), q.id);
      ann.forEach((h, i) => assert.ok(Math.abs(h.score - exact[i].score) < 1e-6, `${q.id} ${h.id}: the score is exact`));
    }
  });

  test("r3gpu search streams the reasoning, then the ranked results", async () => {
    const { code, stdout, stderr } = await r3gpu("search", tinyDir, "--db", db, "cover module because", "-k", "3", "--json", "--max-new-tokens", "4");
    assert.equal(code, 0, stderr);
    const out = JSON.parse(stdout);
    assert.equal(out.query, "cover module because");
    assert.equal(typeof out.reasoning, "string");
    assert.ok(stderr.includes(out.reasoning), "the reasoning streams to stderr when stdout holds the JSON");
    assert.deepEqual(out.results.map((r: { rank: number }) => r.rank), [1, 2, 3]);
    const scores = out.results.map((r: { score: number }) => r.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a));

    const text = await r3gpu("search", tinyDir, "--db", db, "cover module because", "-k", "2", "--no-reasoning");
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[0], /^ {2}1\. \d\.\d{4} {2}d\d\d {2}\(.*corpus\.jsonl:\d+\)$/);
    assert.match(lines[2], /^ {2}2\. /);
  });
});

describe("resumable indexing", () => {
  const docs = join(work, "docs");
  const resumed = join(work, "resumed");
  const fresh = join(work, "fresh");
  const indexArgs = (db: string, model = tinyDir) => ["index", model, docs, "--db", db, "--max-length", MAX_LENGTH, "--batch", "1"];

  test("a run killed with SIGKILL loses nothing it wrote, and the next one finishes without duplicates", async () => {
    await mkdir(docs);
    for (const doc of await collect(fixture)) await writeFile(join(docs, `${doc.id}.txt`), documentText(doc));

    const child = spawn(process.execPath, [cli, ...indexArgs(resumed)], { stdio: "ignore" });
    const exited = once(child, "exit");
    let seen = 0;
    while (child.exitCode === null && seen === 0) {
      try {
        seen = await (await (await lancedb.connect(resumed)).openTable("chunks")).countRows();
      } catch {
        // Not created yet.
      }
      if (seen === 0) await sleep(20);
    }
    child.kill("SIGKILL");
    const [, signal] = await exited;
    assert.equal(signal, "SIGKILL", "the run finished before it could be killed");

    const afterKill = await readRows(resumed);
    assert.ok(afterKill.length >= seen, `${seen} chunks were seen before the kill, ${afterKill.length} remain`);
    assertEachChunkOnce(afterKill);
    const present = new Set(afterKill.map((r) => r.doc_id));
    assert.ok(present.size < 12, "killed mid-way");

    const { code, stdout, stderr } = await r3gpu(...indexArgs(resumed));
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`^embedded ${12 - present.size} documents .* ${present.size} already indexed, 0 replaced;`));

    // An uninterrupted run, through the library, gives the same table: same settings, chunks and vectors.
    const index = await SearchIndex.open(fresh, { create: settings });
    const report = await indexCorpus(r3, index, docs);
    assert.deepEqual([report.embedded, report.skipped, report.replaced], [12, 0, 0]);
    const want = await readRows(fresh);
    assertSameRows(await readRows(resumed), want);
    // The documents that survived the kill were whole.
    for (const id of present) {
      assert.equal(afterKill.filter((r) => r.doc_id === id).length, want.filter((r) => r.doc_id === id).length, id);
    }
  });

  test("re-indexing a changed file replaces its chunks and leaves the others alone", async () => {
    const before = await readRows(resumed);
    const oldChunks = before.filter((r) => r.doc_id === "d12.txt");
    assert.ok(oldChunks.length > 1);
    await writeFile(join(docs, "d12.txt"), "A short replacement text.");
    const index = await SearchIndex.open(resumed, { create: settings });
    const report = await indexCorpus(r3, index, docs);
    assert.deepEqual([report.embedded, report.replaced, report.skipped, report.chunks], [1, 1, 11, 1]);
    const after = await readRows(resumed);
    assertEachChunkOnce(after);
    assert.equal(after.length, before.length - oldChunks.length + 1);
    assert.deepEqual(after.filter((r) => r.doc_id === "d12.txt").map((r) => r.text), ["A short replacement text."]);
    assertSameRows(after.filter((r) => r.doc_id !== "d12.txt"), before.filter((r) => r.doc_id !== "d12.txt"));
  });

  test("another prompt, another config or another model is refused", async () => {
    const other = new SearchR3(engine, { maxLength: Number(MAX_LENGTH), documentSystem: "Represent this text." });
    await assert.rejects(SearchIndex.open(resumed, { create: indexSettings(other, identity, resolveChunking(other)) }),
      /other settings, which must not be mixed \(.*documentSystem: index has "Please represent the document\.", this run "Represent this text\."/);
    await assert.rejects(SearchIndex.open(resumed, { create: { ...settings, chunkOverlap: 0 } }), /chunkOverlap: index has \d+, this run 0/);
    const index = await SearchIndex.open(resumed);
    assert.throws(() => index.checkModel({ ...identity, model: "other-model" }), /another model \(model: index has "tiny-qwen2", this run "other-model"\)/);
    assert.deepEqual(searchR3Options(index.settings).documentSystem, "Please represent the document.");

    // The same folder name with another config.json: refused by the CLI before the weights load.
    const copy = join(work, "copy", "tiny-qwen2");
    await mkdir(copy, { recursive: true });
    for (const file of await readdir(tinyDir)) {
      if (file !== "config.json") await symlink(join(tinyDir, file), join(copy, file));
    }
    const config = JSON.parse(await readFile(join(tinyDir, "config.json"), "utf8"));
    await writeFile(join(copy, "config.json"), JSON.stringify({ ...config, initializer_range: 0.03 }));
    const count = (await readRows(resumed)).length;
    for (const args of [indexArgs(resumed, copy), ["search", copy, "--db", resumed, "question", "--no-reasoning"]]) {
      const { code, stderr } = await r3gpu(...args);
      assert.equal(code, 1);
      assert.match(stderr, /was built with another model \(configHash: index has "[0-9a-f]{64}", this run "[0-9a-f]{64}"\)/);
    }
    assert.equal((await readRows(resumed)).length, count);
  });
});
