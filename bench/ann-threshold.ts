// Where LanceDB's ANN index starts to pay off against its exact (flat) scan, on clustered unit vectors shaped like
// Search-R3 embeddings. For each table size and index type: the index's build time, then the median latency of an
// exact scan and of an ANN query (alternating), and the ANN's recall@10 against the exact result.
//
//   npm run build && node dist/bench/ann-threshold.js [--dim 1536] [--sizes 2000,10000,30000,100000] [--queries 50]
import * as lancedb from "@lancedb/lancedb";
import { Field, FixedSizeList, Float32, Int32, Schema } from "apache-arrow";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { mulberry32 } from "../src/util/prng.ts";

const { values } = parseArgs({
  options: {
    dim: { type: "string", default: "1536" },
    sizes: { type: "string", default: "2000,10000,30000,100000" },
    queries: { type: "string", default: "50" },
  },
});
const dim = Number(values.dim);
const sizes = values.sizes!.split(",").map(Number);
const nQueries = Number(values.queries);
const K = 10;

const random = mulberry32(1);
function gaussian(): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}
function unit(v: Float32Array): Float32Array {
  let sq = 0;
  for (const x of v) sq += x * x;
  return v.map((x) => x / Math.sqrt(sq));
}
// Real embeddings cluster by topic; uniform random vectors would be the worst case for IVF.
const centroids = Array.from({ length: 256 }, () => unit(Float32Array.from({ length: dim }, gaussian)));
function near(center: Float32Array, spread: number): Float32Array {
  return unit(center.map((x) => x + spread * gaussian() / Math.sqrt(dim)));
}

type Tune = (query: lancedb.VectorQuery) => lancedb.VectorQuery;

const schema = new Schema([
  new Field("id", new Int32(), false),
  new Field("vector", new FixedSizeList(dim, new Field("item", new Float32(), true)), false),
]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function recall(got: number[][], want: number[][]): number {
  let hit = 0;
  got.forEach((ids, i) => { hit += ids.filter((id) => want[i].includes(id)).length; });
  return hit / (want.length * K);
}

const dir = await mkdtemp(join(tmpdir(), "r3gpu-ann-"));
try {
  const db = await lancedb.connect(dir);
  const table = await db.createEmptyTable("chunks", schema);
  const data: Float32Array[] = [];
  console.log(`dim ${dim}, ${nQueries} queries, k ${K}, cosine`);
  console.log("rows\texact_ms\tindex\tbuild_s\tann_ms\trecall@10");
  for (const size of sizes) {
    const rows = [];
    while (data.length < size) {
      const v = near(centroids[Math.floor(random() * centroids.length)], 0.8);
      rows.push({ id: data.length, vector: Array.from(v) });
      data.push(v);
      if (rows.length === 5000 || data.length === size) await table.add(rows.splice(0));
    }
    await table.optimize();
    const queries = Array.from({ length: nQueries }, () => near(data[Math.floor(random() * data.length)], 0.5));
    const search = async (q: Float32Array, exact: boolean, tune: Tune) => {
      const query = tune(table.vectorSearch(q).distanceType("cosine").select(["id", "_distance"]).limit(K));
      const t = performance.now();
      const rows = await (exact ? query.bypassVectorIndex() : query).toArray();
      return { ms: performance.now() - t, ids: rows.map((x) => x.id as number) };
    };
    // Each index with LanceDB's default query settings and with more partitions probed (and, for HNSW, a wider
    // beam); a refine factor re-ranks the candidates by their full vectors, so scores are exact.
    const indexes: [string, lancedb.Index, [string, Tune][]][] = [
      ["ivf_hnsw_sq", lancedb.Index.hnswSq({ distanceType: "cosine" }), [
        ["defaults", (x) => x],
        ["nprobes 64, ef 128, refine 2", (x) => x.nprobes(64).ef(128).refineFactor(2)],
      ]],
      ["ivf_pq", lancedb.Index.ivfPq({ distanceType: "cosine" }), [
        ["refine 10", (x) => x.refineFactor(10)],
        ["nprobes 64, refine 10", (x) => x.nprobes(64).refineFactor(10)],
      ]],
    ];
    for (const [name, config, tunings] of indexes) {
      const t = performance.now();
      await table.createIndex("vector", { config, replace: true });
      const build = (performance.now() - t) / 1000;
      for (const [tuning, tune] of tunings) {
        // Exact and ANN queries alternate, so that the machine's load weighs on both alike.
        await search(queries[0], true, (x) => x);
        await search(queries[0], false, tune);
        const exact = [];
        const ann = [];
        for (const q of queries) {
          exact.push(await search(q, true, (x) => x));
          ann.push(await search(q, false, tune));
        }
        const exactMs = median(exact.map((r) => r.ms));
        const annMs = median(ann.map((r) => r.ms));
        const r = recall(ann.map((x) => x.ids), exact.map((x) => x.ids));
        console.log(`${size}\t${exactMs.toFixed(1)}\t${name} (${tuning})\t${build.toFixed(1)}\t${annMs.toFixed(1)}\t${r.toFixed(3)}`);
      }
    }
    for (const index of await table.listIndices()) await table.dropIndex(index.name);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
