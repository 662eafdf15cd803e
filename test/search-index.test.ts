// Corpus reading and chunking, the LanceDB index (resume after SIGKILL, replacement of changed documents, refusal of
// other models and prompts), `r3gpu search` and `r3gpu eval` end to end on models/tiny-qwen2 and the BEIR fixture in
// test/fixtures/beir-tiny. The model's weights are random, so scores mean nothing: the tests check the pipeline and
// the arithmetic.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { once } from "node:events";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { constants as osConstants, hostname, tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import * as lancedb from "@lancedb/lancedb";
import { nodeGpu } from "../src/gpu/node.ts";
import { nodeModelDir } from "../src/io/node.ts";
import {
  chunkText, describeSkipped, documentText, isFromCorpus, readCorpus, type CorpusOptions, type Document, type SkippedFile,
} from "../src/search/corpus.ts";
import { parseQrels, readBeir, runQueries } from "../src/search/eval.ts";
import { indexCorpus } from "../src/search/indexing.ts";
import { IndexLock, IndexLockedError, LOCK_FILE } from "../src/search/lock.ts";
import { searchQuery } from "../src/search/query.ts";
import { modelIdentity } from "../src/search/model-identity.ts";
import { indexSettings, resolveChunking, searchR3Options } from "../src/search/settings.ts";
import { SearchIndex, type ChunkRow } from "../src/search/store.ts";
import { reciprocalRankFusion } from "../src/search/fusion.ts";
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

/** A running CLI whose output is collected as it comes, for tests that act on it while it runs. */
function start(args: string[]) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const out = { stdout: "", stderr: "" };
  child.stdout.setEncoding("utf8").on("data", (s) => (out.stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s) => (out.stderr += s));
  const closed = new Promise<[number | null, string | null]>((done) => child.on("close", (code, signal) => done([code, signal])));
  return { child, out, closed };
}

/** Waits for `condition`, failing with `what` after two minutes. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 120_000; !condition();) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Whether `pid` runs: it exists and is not a zombie (orphans may stay unreaped in a container). */
const running = (pid: number) => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

const { device } = await nodeGpu();
const dir = nodeModelDir(tinyDir);
const engine = await Engine.load(device, dir, { maxSeqLen: Number(MAX_LENGTH) });
const { tokenizer } = engine;
const r3 = new SearchR3(engine, { maxLength: Number(MAX_LENGTH) });
const identity = await modelIdentity(dir);
const settings = indexSettings(r3, identity, resolveChunking(r3));

async function collect(path: string, opts?: CorpusOptions): Promise<Document[]> {
  const out: Document[] = [];
  for await (const doc of readCorpus(path, opts)) out.push(doc);
  return out;
}

/** A chunk row as LanceDB gives it back (vectors as plain arrays). */
type Row = Omit<ChunkRow, "vector"> & { vector: number[] };

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

  test("include and exclude globs; every file not read is told, with the reason", async () => {
    const mixed = join(work, "mixed");
    await mkdir(join(mixed, "docs"), { recursive: true });
    await mkdir(join(mixed, "drafts"), { recursive: true });
    const files: Record<string, string | Uint8Array> = {
      ".hidden.md": "hidden", "a.md": "# A", "b.rst": "Bee", "bad.txt": new Uint8Array([0x41, 0xff, 0xfe]), "docs/c.RST": "Sea",
      "drafts/d.md": "draft", "e.json": "{}", "empty.md": " \n", "f.png": new Uint8Array([0x89, 0x50, 0x4e, 0x47]),
    };
    for (const [name, content] of Object.entries(files)) await writeFile(join(mixed, name), content);
    await symlink(join(mixed, "a.md"), join(mixed, "g.md"));
    const read = async (opts: CorpusOptions) => {
      const skipped: SkippedFile[] = [];
      const docs = await collect(mixed, { ...opts, onSkip: (s) => skipped.push(s) });
      return { ids: docs.map((d) => d.id), skipped: skipped.map((s) => [relative(mixed, s.path), s.reason]), all: skipped };
    };
    const byDefault = await read({});
    assert.deepEqual(byDefault.ids, ["a.md", "drafts/d.md"]);
    assert.deepEqual(byDefault.skipped, [[".hidden.md", "not included"], ["b.rst", "not included"], ["bad.txt", "not UTF-8 text"],
      ["docs/c.RST", "not included"], ["e.json", "not included"], ["empty.md", "empty"], ["f.png", "not included"], ["g.md", "not a regular file"]]);
    assert.equal(describeSkipped(byDefault.all),
      "skipped 8 files: 5 not included (2 .rst, 1 .md, 1 .json, 1 .png), 1 not UTF-8 text, 1 empty, 1 not a regular file");
    const chosen = await read({ include: ["**/*.rst", "**/*.md"], exclude: ["drafts/**"] });
    assert.deepEqual(chosen.ids, ["a.md", "b.rst", "docs/c.RST"]);
    assert.deepEqual(chosen.skipped.filter(([, r]) => r === "excluded"), [["drafts/d.md", "excluded"]]);
    assert.deepEqual(chosen.skipped.find(([f]) => f === "bad.txt"), ["bad.txt", "not included"]);
    assert.equal(describeSkipped([]), "");
  });

  test("one text file is one document; only a .jsonl file is JSON lines; another file is refused", async () => {
    const lines = '{"id":"x","text":"one"}\n{"id":"y","text":"two"}\n';
    const asText = join(work, "lines.txt");
    const asJsonl = join(work, "lines.jsonl");
    await writeFile(asText, lines);
    await writeFile(asJsonl, lines);
    assert.deepEqual(await collect(asText), [{ id: "lines.txt", text: lines, source: asText }]);
    assert.deepEqual((await collect(asJsonl)).map((d) => [d.id, d.source]), [["x", `${asJsonl}:1`], ["y", `${asJsonl}:2`]]);
    const rst = join(work, "notes.rst");
    await writeFile(rst, "Notes.");
    await assert.rejects(collect(rst), /notes\.rst: not a corpus: a folder, a \.jsonl file, or a file that the include patterns \(\*\*\/\*\.txt, \*\*\/\*\.md\) match/);
    assert.deepEqual((await collect(rst, { include: ["*.rst"] })).map((d) => d.id), ["notes.rst"]);
    const blank = join(work, "blank.md");
    await writeFile(blank, "\n");
    await assert.rejects(collect(blank), /blank\.md: empty, so there is nothing to index/);
  });

  test("a document's source tells whether it came from a corpus", () => {
    const root = join(work, "docs");
    assert.ok(isFromCorpus(root, join(root, "a.txt")));
    assert.ok(isFromCorpus(root, join(root, "sub", "b.md")));
    assert.ok(isFromCorpus(root, `${join(root, "corpus.jsonl")}:3`));
    assert.ok(!isFromCorpus(root, join(work, "docs2", "a.txt")));
    assert.ok(!isFromCorpus(root, join(work, "a.txt")));
    const file = join(work, "docs.jsonl");
    assert.ok(isFromCorpus(file, `${file}:12`));
    assert.ok(!isFromCorpus(file, `${file}x:12`));
    assert.ok(!isFromCorpus(file, `${file}:x`));
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
    assert.match(evalRun.stdout, /\(4 queries, split test, 12 documents in \d+ chunks, query reasoning on, vector search\)/);
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

    // The launcher's child, which held the lock, dies of the launcher's death a moment later.
    const { pid } = JSON.parse(await readFile(join(resumed, LOCK_FILE), "utf8"));
    await until(() => !running(pid), "the killed run's process to end");
    const { code, stdout, stderr } = await r3gpu(...indexArgs(resumed));
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`^embedded ${12 - present.size} documents .* ${present.size} already indexed, 0 replaced, 0 removed;`));
    assert.match(stderr, /took over the lock of process \d+ \(since .*\), which is no longer running/, "the killed run's lock");

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

  test("another prompt or other chunking is refused", async () => {
    const other = new SearchR3(engine, { maxLength: Number(MAX_LENGTH), documentSystem: "Represent this text." });
    await assert.rejects(SearchIndex.open(resumed, { create: indexSettings(other, identity, resolveChunking(other)) }),
      /other settings, which must not be mixed \(.*documentSystem: index has "Please represent the document\.", this run "Represent this text\."/);
    await assert.rejects(SearchIndex.open(resumed, { create: { ...settings, chunkOverlap: 0 } }), /chunkOverlap: index has \d+, this run 0/);
    const index = await SearchIndex.open(resumed);
    assert.deepEqual(searchR3Options(index.settings).documentSystem, "Please represent the document.");
  });

  test("the model is known by content: a copy in another folder is accepted; another config, tokenizer or weights under the same name are refused", async () => {
    const copy = join(work, "elsewhere", "my-model");
    await cp(tinyDir, copy, { recursive: true });
    assert.deepEqual(await modelIdentity(nodeModelDir(copy)), { ...identity, name: "my-model" });
    const found = await r3gpu("search", copy, "--db", resumed, "cover module because", "--no-reasoning", "-k", "2");
    assert.equal(found.code, 0, found.stderr);
    const again = await r3gpu(...indexArgs(resumed, copy));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^embedded 0 documents .* 12 already indexed, 0 replaced, 0 removed;/);

    // Folders named as the index's model, linking to its files but one.
    const variant = async (name: string, file: string, content: string | Uint8Array) => {
      const dir = join(work, name, "tiny-qwen2");
      await mkdir(dir, { recursive: true });
      for (const f of await readdir(tinyDir)) if (f !== file) await symlink(join(tinyDir, f), join(dir, f));
      await writeFile(join(dir, file), content);
      return dir;
    };
    const config = JSON.parse(await readFile(join(tinyDir, "config.json"), "utf8"));
    const tokenizerConfig = JSON.parse(await readFile(join(tinyDir, "tokenizer_config.json"), "utf8"));
    // The lowest mantissa bit of every BF16 weight flipped: the same tensors and header, other weights.
    const weights = await readFile(join(tinyDir, "model.safetensors"));
    for (let i = 8 + Number(weights.readBigUInt64LE(0)); i < weights.length; i += 2) weights[i] ^= 1;
    const cases: [string, RegExp][] = [
      [await variant("config", "config.json", JSON.stringify({ ...config, initializer_range: 0.03 })),
        /\(config\.json differs \(index has configHash [0-9a-f]{64}, this model [0-9a-f]{64}\)\)/],
      [await variant("tokenizer", "tokenizer_config.json", JSON.stringify({ ...tokenizerConfig, model_max_length: 77 })),
        /\(the tokenizer files differ \(index has tokenizerHash [0-9a-f]{64}, this model [0-9a-f]{64}\)\)/],
      [await variant("weights", "model.safetensors", weights),
        /\(model\.safetensors holds other weights \(the sampled bytes differ from the index's\)\)/],
    ];
    const count = (await readRows(resumed)).length;
    for (const [dir, reason] of cases) {
      for (const args of [indexArgs(resumed, dir), ["search", dir, "--db", resumed, "question", "--no-reasoning"]]) {
        const { code, stderr } = await r3gpu(...args);
        assert.equal(code, 1, stderr);
        assert.match(stderr, /holds the embeddings of another model, which must not be mixed with this one's/);
        assert.match(stderr, reason);
      }
    }
    assert.equal((await readRows(resumed)).length, count);
  });

  test("an index from before models were known by content is refused with the reason", async () => {
    const db = join(work, "legacy-db");
    const old = { ...settings, model: "tiny-qwen2", configHash: identity.configHash };
    await (await lancedb.connect(db)).createTable("settings", [{ json: JSON.stringify(old) }]);
    const { code, stderr } = await r3gpu("search", tinyDir, "--db", db, "question", "--no-reasoning");
    assert.equal(code, 1);
    assert.match(stderr, /legacy-db was made by an earlier r3gpu, which recorded the model by its folder name only; .* index them again into a new --db/);
  });
});

describe("an index that follows its corpus", () => {
  const folder = join(work, "following");
  const db = join(work, "following-db");
  const indexArgs = (...more: string[]) => ["index", tinyDir, folder, "--db", db, "--max-length", MAX_LENGTH, ...more];
  const docIds = async () => [...new Set((await readRows(db)).map((r) => r.doc_id))];

  test("run again over a folder, index removes the documents whose files are gone (--prune, the default); --no-prune keeps them", async () => {
    await mkdir(join(folder, "sub"), { recursive: true });
    for (let i = 0; i < 4; i++) await writeFile(join(folder, i < 2 ? "sub" : "", `doc${i}.md`), `Document number ${i}, about rivers.`);
    await writeFile(join(folder, "data.json"), "{}");
    const first = await r3gpu(...indexArgs());
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^embedded 4 documents .* 0 already indexed, 0 replaced, 0 removed; .*: 4 chunks, exact search$/m);
    assert.match(first.stderr, new RegExp(`^${folder}: skipped 1 file: 1 not included \\(1 \\.json\\)$`, "m"));

    await rm(join(folder, "sub", "doc0.md"));
    await rm(join(folder, "doc3.md"));
    const kept = await r3gpu(...indexArgs("--no-prune"));
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(kept.stdout, /^embedded 0 documents .* 2 already indexed, 0 replaced, 0 removed; .*: 4 chunks/);
    const pruned = await r3gpu(...indexArgs());
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /^embedded 0 documents .* 2 already indexed, 0 replaced, 2 removed; .*: 2 chunks/);
    assert.deepEqual(await docIds(), ["doc2.md", "sub/doc1.md"]);
  });

  test("documents read from another corpus into the same index stay; a file's own documents go only with prune", async () => {
    const file = join(work, "extra.jsonl");
    await writeFile(file, JSON.stringify({ id: "extra", text: "From a JSONL file." }) + "\n");
    const index = await SearchIndex.open(db, { create: settings });
    assert.equal((await indexCorpus(r3, index, file)).embedded, 1);
    const folderRun = await indexCorpus(r3, index, folder);
    assert.deepEqual([folderRun.removed, folderRun.skipped, folderRun.embedded], [0, 2, 0]);
    await writeFile(file, JSON.stringify({ id: "other", text: "Another one." }) + "\n");
    assert.equal((await indexCorpus(r3, index, file)).removed, 0, "prune is off by default for a file");
    assert.deepEqual(await docIds(), ["doc2.md", "extra", "other", "sub/doc1.md"]);
    assert.equal((await indexCorpus(r3, index, file, { prune: true })).removed, 1);
    assert.deepEqual(await docIds(), ["doc2.md", "other", "sub/doc1.md"]);
  });

  test("a folder with nothing to index is an error (exit 1) that says what was skipped; so is a missing corpus", async () => {
    const nothing = join(work, "nothing");
    await mkdir(nothing);
    await writeFile(join(nothing, "data.json"), "{}");
    const run = await r3gpu("index", tinyDir, nothing, "--db", join(work, "nothing-db"), "--max-length", MAX_LENGTH);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, new RegExp(`^r3gpu index: ${nothing}: no documents to index \\(skipped 1 file: 1 not included \\(1 \\.json\\)\\)$`, "m"));
    const missing = await r3gpu("index", tinyDir, join(work, "no-such"), "--db", join(work, "nothing-db"));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no-such: no such corpus file or folder/);
  });
});

/** A corpus slow enough to interrupt: short documents, every tenth a long one of several chunks. */
const big = join(work, "big");
const BIG_DOCS = 400;
async function writeBigCorpus(): Promise<void> {
  if (existsSync(big)) return;
  await mkdir(big);
  const words = "river stone cloud forest lantern harbor meadow copper signal garden winter orbit".split(" ");
  for (let i = 0; i < BIG_DOCS; i++) {
    const n = i % 10 === 0 ? 120 : 12;
    const text = Array.from({ length: n }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(" ");
    await writeFile(join(big, `doc${String(i).padStart(3, "0")}.txt`), `${text}.`);
  }
}
const bigArgs = (db: string, ...more: string[]) =>
  ["index", tinyDir, big, "--db", db, "--max-length", MAX_LENGTH, "--batch-size", "1", ...more];

describe("interrupting index", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const code = 128 + osConstants.signals[signal];
    test(`${signal} stores every document embedded so far, says how many and exits ${code}; the next run resumes`, async () => {
      await writeBigCorpus();
      const db = join(work, `interrupted-${signal}`);
      // One commit at the end, were it not interrupted: what is stored comes from the interruption.
      const { child, out, closed } = start(bigArgs(db, "--batch", "100000", "--progress-every", "0.05"));
      const line = /^indexing: +\d+% (\d+)\/(\d+) [\d.]+s eta [\d.]+s [\d.]+ docs\/s \d+ tok\/s$/m;
      await until(() => Number(line.exec(out.stderr)?.[1] ?? 0) > 0, "a progress line (stderr is not a terminal)");
      assert.equal(line.exec(out.stderr)![2], String(BIG_DOCS));
      child.kill(signal);
      assert.deepEqual(await closed, [code, null], out.stderr);
      const said = /^r3gpu index: interrupted: the (\d+) documents embedded by this run are stored; (\d+) are left, which the same command embeds when run again$/m.exec(out.stderr);
      assert.ok(said, out.stderr);
      const stored = Number(said[1]);
      assert.ok(stored > 0 && stored < BIG_DOCS, `${stored} stored`);
      assert.equal(Number(said[2]), BIG_DOCS - stored);
      assert.match(out.stdout, new RegExp(`^embedded ${stored} documents `));
      assert.ok(!existsSync(join(db, LOCK_FILE)), "the lock is released");

      const rows = await readRows(db);
      assertEachChunkOnce(rows);
      const docs = new Map<string, number>();
      for (const r of rows) docs.set(r.doc_id, (docs.get(r.doc_id) ?? 0) + 1);
      assert.equal(docs.size, stored);
      for (const [id, n] of docs) {
        const text = await readFile(join(big, id), "utf8");
        assert.equal(n, chunkText(tokenizer, text, settings.chunkTokens, settings.chunkOverlap).length, `${id} is stored whole`);
      }
      const resumed = await r3gpu(...bigArgs(db));
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stdout, new RegExp(`^embedded ${BIG_DOCS - stored} documents .* ${stored} already indexed, 0 replaced, 0 removed;`));
    });
  }
});

describe("one index run at a time", () => {
  test("a second run on the same database is refused, naming the first's process; the first finishes alone", async () => {
    await writeBigCorpus();
    const db = join(work, "locked");
    const first = start(bigArgs(db, "--progress-every", "0.05"));
    // Its first progress line: the lock is taken and the index (with its settings) exists.
    await until(() => /^indexing: /m.test(first.out.stderr), "the first run's progress");
    const holder: { pid: number; host: string; started: string } = JSON.parse(readFileSync(join(db, LOCK_FILE), "utf8"));
    assert.equal(holder.host, hostname());
    const second = await r3gpu(...bigArgs(db));
    assert.equal(second.code, 1);
    assert.equal(second.stdout, "");
    assert.equal(second.stderr, `r3gpu index: ${db} is being indexed by process ${holder.pid} on ${hostname()} (since ` +
      `${holder.started}); wait for that run to finish, or, if no such process is running, remove ${join(db, LOCK_FILE)}\n`);
    const info = await r3gpu("info", "--db", db, "--json");
    assert.equal(info.code, 0, info.stderr);
    assert.deepEqual(JSON.parse(info.stdout).lock, { ...holder, running: true });
    assert.equal(first.child.exitCode, null, "the first run was still running");
    assert.deepEqual(await first.closed, [0, null], first.out.stderr);
    assert.match(first.out.stdout, new RegExp(`^embedded ${BIG_DOCS} documents .*: \\d+ chunks`));
    const rows = await readRows(db);
    assertEachChunkOnce(rows);
    assert.equal(new Set(rows.map((r) => r.doc_id)).size, BIG_DOCS);
    assert.ok(!existsSync(join(db, LOCK_FILE)));
  });

  test("in the library: a lock refuses a second holder until released; a dead process's lock is taken over", async () => {
    const dir = join(work, "lock-lib");
    const messages: string[] = [];
    const lock = await IndexLock.acquire(dir, (m) => messages.push(m));
    await assert.rejects(IndexLock.acquire(dir), (e) => e instanceof IndexLockedError && e.holder.pid === process.pid);
    await lock.release();
    await (await IndexLock.acquire(dir)).release();

    const dead = spawn(process.execPath, ["-e", ""]);
    await once(dead, "exit");
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ pid: dead.pid, host: hostname(), started: "2020-01-02T03:04:05.000Z" }));
    const taken = await IndexLock.acquire(dir, (m) => messages.push(m));
    assert.deepEqual(messages, [`${dir}: took over the lock of process ${dead.pid} (since 2020-01-02T03:04:05.000Z), which is no longer running`]);
    assert.equal(JSON.parse(await readFile(join(dir, LOCK_FILE), "utf8")).pid, process.pid);
    await taken.release();
    await writeFile(join(dir, LOCK_FILE), "not json");
    await assert.rejects(IndexLock.acquire(dir), /\.r3gpu-index\.lock: not a lock file r3gpu wrote; remove it if no `r3gpu index` runs on this index/);
  });
});

describe("info, hybrid search and batch sizes on the BEIR fixture's index", () => {
  const db = join(work, "beir-db");

  test("r3gpu info --db says what the index holds", async () => {
    const json = await r3gpu("info", "--db", db, "--json");
    assert.equal(json.code, 0, json.stderr);
    const out = JSON.parse(json.stdout);
    const { model, ...rest } = settings;
    assert.deepEqual(out.model, model);
    assert.deepEqual(out.settings, rest);
    assert.deepEqual([out.documents, out.chunks, out.ann_index, out.full_text_index, out.lock], [12, (await readRows(db)).length, false, true, null]);
    const files = await readdir(db, { recursive: true, withFileTypes: true });
    const bytes = (await Promise.all(files.filter((f) => f.isFile()).map((f) => stat(join(f.parentPath, f.name))))).reduce((n, s) => n + s.size, 0);
    assert.equal(out.size_bytes, bytes);
    const text = await r3gpu("info", "--db", db);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^index       ${db}, [\\d.]+ KiB on disk$`, "m"));
    assert.match(text.stdout, /^documents   12 in \d+ chunks$/m);
    assert.match(text.stdout, /^search      exact scan \(no ANN index\); full-text index \(--hybrid\)$/m);
    assert.match(text.stdout, new RegExp(`^model       tiny-qwen2: config\\.json ${model.configHash.slice(0, 16)}\\.\\.\\., tokenizer ${model.tokenizerHash.slice(0, 16)}`, "m"));
    const none = await r3gpu("info", "--db", join(work, "no-such-db"));
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no-such-db: no index here/);
  });

  test("hybrid search: reciprocal rank fusion of the vector and the full-text rankings", async () => {
    assert.deepEqual(reciprocalRankFusion([["a", "b", "c"], ["c", "d"]]).map((h) => [h.id, h.score]),
      [["c", 1 / 63 + 1 / 61], ["a", 1 / 61], ["d", 1 / 62], ["b", 1 / 62]]);
    const index = await SearchIndex.open(db);
    for (const q of (await readBeir(fixture)).queries) {
      const vector = await r3.encodeQuery(q.text);
      const byVector = await index.search(vector, 100);
      const byText = await index.fullTextSearch(q.text, 100);
      // The fixture's queries are words of one document each, so BM25 ranks that document first.
      const words = q.text.replace(/\?$/, "").toLowerCase();
      assert.ok(`${byText[0].title ?? ""} ${byText[0].text}`.toLowerCase().includes(words), `${q.id}: ${byText[0].id}`);
      const fused = new Map<string, number>();
      for (const ranking of [byVector, byText]) ranking.forEach((h, i) => fused.set(h.id, (fused.get(h.id) ?? 0) + 1 / (60 + i + 1)));
      const hits = await index.hybridSearch(vector, q.text, 5);
      assert.deepEqual(hits.map((h) => h.id), rankDocuments(Object.fromEntries(fused)).slice(0, 5), q.id);
      for (const h of hits) {
        assert.ok(Math.abs(h.score - fused.get(h.id)!) < 1e-12);
        const vectorRank = byVector.findIndex((v) => v.id === h.id) + 1;
        const textRank = byText.findIndex((v) => v.id === h.id) + 1;
        assert.deepEqual(h.ranks, { vector: vectorRank || undefined, text: textRank || undefined });
      }
    }
    const cli = await r3gpu("search", tinyDir, "--db", db, "cover module because", "--hybrid", "--no-reasoning", "--json", "-k", "3");
    assert.equal(cli.code, 0, cli.stderr);
    const results = JSON.parse(cli.stdout).results;
    assert.equal(results[0].id, "d01");
    assert.deepEqual(Object.keys(results[0].ranks).sort(), ["text", "vector"]);
  });

  test("--batch-size: index, eval and search give batch size 1's results within the golden tolerance", async () => {
    // The fixture's index was built at the default batch size (8 chunks a forward pass); again one at a time.
    const single = join(work, "beir-db-batch-1");
    const built = await r3gpu("index", tinyDir, fixture, "--db", single, "--max-length", MAX_LENGTH, "--batch-size", "1");
    assert.equal(built.code, 0, built.stderr);
    const [one, eight] = [await readRows(single), await readRows(db)];
    assert.equal(one.length, eight.length);
    one.forEach((r, i) => {
      const { vector: v1, ...rest1 } = r;
      const { vector: v8, ...rest8 } = eight[i];
      assert.deepEqual(rest1, rest8);
      const maxRef = Math.max(...v1.map(Math.abs));
      const err = Math.max(...v1.map((x, j) => Math.abs(x - v8[j])));
      assert.ok(err <= 1e-4 * maxRef, `${r.doc_id}#${r.chunk}: max abs error ${err} > 1e-4 x ${maxRef}`);
    });

    const runs: Record<string, Record<string, number>>[] = [];
    for (const [index, size] of [[single, "1"], [db, "3"]]) {
      const json = join(work, `hybrid-${size}.json`);
      const run = await r3gpu("eval", tinyDir, "--beir", fixture, "--db", index, "--max-length", MAX_LENGTH, "--no-reasoning",
        "--hybrid", "--batch-size", size, "--json", json);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /\(4 queries, split test, 12 documents in \d+ chunks, query reasoning off, hybrid: vector \+ full-text, reciprocal rank fusion\)/);
      runs.push(JSON.parse(await readFile(json, "utf8")).run);
    }
    assert.deepEqual(Object.keys(runs[0]), Object.keys(runs[1]));
    for (const [qid, scores] of Object.entries(runs[0])) {
      // Fused scores are sums of 1 / (60 + rank): equal where the rankings are.
      assert.deepEqual(scores, runs[1][qid], qid);
    }

    // search loads the model for --batch-size sequences and embeds its one query in the first.
    const searched: { id: string; score: number }[][] = [];
    for (const size of ["1", "4"]) {
      const found = await r3gpu("search", tinyDir, "--db", db, "cover module because", "--no-reasoning", "--json", "-k", "12", "--batch-size", size);
      assert.equal(found.code, 0, found.stderr);
      searched.push(JSON.parse(found.stdout).results);
    }
    assert.equal(searched[0].length, 12);
    searched[0].forEach((hit, i) => {
      const other = searched[1].find((h) => h.id === hit.id);
      assert.ok(other, `${hit.id} found at both batch sizes`);
      // Cosines of unit vectors: the golden tolerance, 1e-4 of their largest possible size.
      assert.ok(Math.abs(hit.score - other.score) <= 1e-4, `${hit.id}: ${hit.score} at batch size 1, ${other.score} at 4`);
      assert.ok(Math.abs(hit.score - searched[1][i].score) <= 1e-4, `rank ${i + 1}: the same score, whichever document`);
    });
  });
});
