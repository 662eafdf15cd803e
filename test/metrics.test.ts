// Retrieval metrics against values worked out by hand with trec_eval's definitions (see src/search/metrics.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseQrels } from "../src/search/eval.ts";
import { compareIds, evaluateRun, mrrAt, ndcgAt, rankDocuments, recallAt, type Qrels, type Run } from "../src/search/metrics.ts";
import { perQuerySvg } from "../src/search/plot.ts";

const close = (got: number, want: number, what = "") => assert.ok(Math.abs(got - want) < 1e-12, `${what}: got ${got}, want ${want}`);

// Graded judgments; "e" is retrieved but unjudged, "d" relevant but not retrieved.
const graded = { a: 2, b: 1, c: 0, d: 1 };
const gradedRun = { a: 0.9, c: 0.8, b: 0.7, e: 0.6 };

describe("ranking", () => {
  test("by score, then by id descending (trec_eval's tie rule), ids compared as strings", () => {
    assert.deepEqual(rankDocuments({ x: 0.5, y: 0.5, w: 0.9, z: 0.5 }), ["w", "z", "y", "x"]);
    // "d9" > "d10" as strings, so d9 comes first among equals: no numeric ordering.
    assert.deepEqual(rankDocuments({ d10: 1, d9: 1, d2: 2 }), ["d2", "d9", "d10"]);
  });

  test("ids compare by code point (strcmp on UTF-8), not UTF-16 code unit", () => {
    assert.ok(compareIds("\u{10000}", "\uFFFF") > 0);
    assert.ok("\u{10000}" < "\uFFFF", "plain < orders by code unit, the other way");
    assert.ok(compareIds("ab", "abc") < 0);
    assert.equal(compareIds("é", "é"), 0);
    assert.deepEqual(rankDocuments({ "\uFFFF": 1, "\u{10000}": 1 }), ["\u{10000}", "\uFFFF"]);
  });
});

describe("nDCG@k (linear gain, log2(rank + 1) discount, ideal from all judged documents)", () => {
  const ranking = rankDocuments(gradedRun); // a(2) c(0) b(1) e(-)
  test("graded relevance, unjudged and unretrieved documents", () => {
    assert.deepEqual(ranking, ["a", "c", "b", "e"]);
    // DCG = 2/log2(2) + 1/log2(4) = 2.5; ideal = 2 + 1/log2(3) + 1/log2(4) = 3.1309297535714575.
    close(ndcgAt(ranking, graded, 10), 2.5 / (2 + 1 / Math.log2(3) + 0.5), "ndcg@10");
    close(ndcgAt(ranking, graded, 10), 0.7984848580994974, "ndcg@10 numerically");
    // At 2: DCG = 2, ideal = 2 + 1/log2(3).
    close(ndcgAt(ranking, graded, 2), 2 / (2 + 1 / Math.log2(3)), "ndcg@2");
    close(ndcgAt(ranking, graded, 1), 1, "ndcg@1");
  });

  test("the gain is the grade, not 2^grade - 1", () => {
    // One grade-3 document at rank 2 and a grade-1 one at rank 1: DCG = 1 + 3/log2(3), ideal = 3 + 1/log2(3).
    close(ndcgAt(["b", "a"], { a: 3, b: 1 }, 10), (1 + 3 / Math.log2(3)) / (3 + 1 / Math.log2(3)));
  });

  test("ties: the relevant document is ranked after its equals with larger ids", () => {
    const ranking = rankDocuments({ x: 0.5, y: 0.5, z: 0.5, w: 0.9 });
    close(ndcgAt(ranking, { x: 1 }, 10), 1 / Math.log2(5)); // x at rank 4
    close(ndcgAt(ranking, { x: 1 }, 3), 0);
  });

  test("no relevant document gives 0; negative grades count as unjudged", () => {
    close(ndcgAt(["a", "b"], { a: 0 }, 10), 0);
    close(ndcgAt(["a", "b"], {}, 10), 0);
    close(ndcgAt(["a", "b"], { a: -1, b: 1 }, 10), 1 / Math.log2(3));
  });
});

describe("Recall@k and MRR@k", () => {
  const ranking = rankDocuments(gradedRun);
  test("recall counts grade >= 1 over all relevant judged documents, retrieved or not", () => {
    close(recallAt(ranking, graded, 100), 2 / 3); // a and b of a, b, d
    close(recallAt(ranking, graded, 1), 1 / 3);
    close(recallAt(ranking, { a: 0 }, 100), 0);
    close(recallAt(["x"], { d99: 1, x: 1 }, 100), 0.5);
  });

  test("reciprocal rank of the first relevant document within the cutoff", () => {
    close(mrrAt(ranking, graded, 10), 1);
    close(mrrAt(["c", "e", "b"], graded, 10), 1 / 3);
    close(mrrAt(["c", "e", "b"], graded, 2), 0);
    close(mrrAt(rankDocuments({ x: 0.5, y: 0.5, z: 0.5, w: 0.9 }), { x: 1 }, 10), 0.25);
    close(mrrAt(["a"], { a: 0 }, 10), 0);
  });
});

describe("evaluateRun", () => {
  const qrels: Qrels = {
    q1: graded,
    q2: { x: 1 },
    q3: { a: 0 }, // no relevant document: evaluated, 0 everywhere
    q4: { a: 1 }, // not in the run: skipped
    q5: { a: 1 }, // in the run with no documents: skipped
  };
  const run: Run = {
    q1: gradedRun,
    q2: { x: 0.5, y: 0.5, z: 0.5, w: 0.9 },
    q3: { a: 1, b: 0.5 },
    q5: {},
    q9: { a: 1 }, // not in the qrels: ignored
  };

  test("means over the queries with judgments and results, trec_eval's default", () => {
    const { metrics, perQuery } = evaluateRun(qrels, run);
    assert.deepEqual(Object.keys(perQuery), ["q1", "q2", "q3"]);
    assert.deepEqual(Object.keys(metrics), ["ndcg@10", "recall@100", "mrr@10"]);
    close(perQuery.q1["ndcg@10"], 0.7984848580994974);
    close(perQuery.q2["ndcg@10"], 1 / Math.log2(5));
    assert.deepEqual(perQuery.q3, { "ndcg@10": 0, "recall@100": 0, "mrr@10": 0 });
    close(metrics["ndcg@10"], (0.7984848580994974 + 1 / Math.log2(5) + 0) / 3, "mean ndcg@10");
    close(metrics["recall@100"], (2 / 3 + 1 + 0) / 3, "mean recall@100");
    close(metrics["mrr@10"], (1 + 0.25 + 0) / 3, "mean mrr@10");
  });

  test("other cutoffs name the measures after them", () => {
    const { metrics } = evaluateRun({ q1: graded }, { q1: gradedRun }, { ndcg: 2, recall: 1, mrr: 1 });
    close(metrics["ndcg@2"], 2 / (2 + 1 / Math.log2(3)));
    close(metrics["recall@1"], 1 / 3);
    close(metrics["mrr@1"], 1);
  });

  test("no query to evaluate gives zeros", () => {
    assert.deepEqual(evaluateRun({ q1: { a: 1 } }, {}).metrics, { "ndcg@10": 0, "recall@100": 0, "mrr@10": 0 });
  });
});

describe("qrels files", () => {
  test("BEIR's TSV with a header, and TREC's four columns", () => {
    const want = { q1: { d1: 2, d2: 0 }, q2: { d3: 1 } };
    assert.deepEqual(parseQrels("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td3\t1\n"), want);
    assert.deepEqual(parseQrels("q1 0 d1 2\r\nq1 0 d2 0\r\nq2 0 d3 1\r\n\n"), want);
  });

  test("ids are data, whatever they are called", () => {
    const qrels = parseQrels("__proto__\tconstructor\t1\n");
    assert.deepEqual(Object.keys(qrels), ["__proto__"]);
    assert.equal(({} as Record<string, unknown>).constructor, Object, "Object.prototype untouched");
    const { metrics } = evaluateRun(qrels, Object.fromEntries([["__proto__", { constructor: 1, toString: 0.5 }]]));
    assert.deepEqual(metrics, { "ndcg@10": 1, "recall@100": 1, "mrr@10": 1 });
    close(ndcgAt(["toString"], { constructor: 1 }, 10), 0);
  });

  test("non-integer grades and repeated judgments are refused", () => {
    assert.throws(() => parseQrels("q1\td1\t1\nq1\td2\t0.5\n", "x.tsv"), /x\.tsv:2: relevance "0\.5" is not an integer/);
    assert.throws(() => parseQrels("q1\td1\t1\nq1\td1\t0\n", "x.tsv"), /x\.tsv:2: document d1 judged twice for query q1/);
    assert.throws(() => parseQrels("q1\td1\n", "x.tsv"), /x\.tsv:1: expected 3 or 4 columns/);
  });
});

describe("per-query plot", () => {
  test("an SVG with a bar per query, best first, and the mean", () => {
    const svg = perQuerySvg({ q1: 0.25, q2: 1, "q<3>": 0 }, { title: "fixture", measure: "nDCG@10" });
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const bars = [...svg.matchAll(/<title>([^<]*): ([\d.]+)<\/title>/g)].map((m) => [m[1], Number(m[2])]);
    assert.deepEqual(bars, [["q2", 1], ["q1", 0.25], ["q&lt;3&gt;", 0]]);
    assert.match(svg, /3 queries, mean 0\.4167/);
    assert.ok(svg.trimEnd().endsWith("</svg>"));
  });
});
