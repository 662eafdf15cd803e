// Search-R3 golden values under Deno (wgpu): embeddings, cosines and greedy reasoning of the shared tiny
// model's search-golden.json, and the README's Deno example.
import { webGpu } from "../../src/gpu/web.ts";
import { denoModelDir } from "../../src/io/deno.ts";
import { SearchR3 } from "../../src/search/searchr3.ts";
import { cosineMatrix } from "../../src/search/similarity.ts";
import { main as example } from "../../examples/deno-example.ts";

const repo = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const goldenRoot = Deno.env.get("R3GPU_GOLDEN_DIR") ?? `${repo}/../shared/golden`;
const modelDir = `${goldenRoot}/tiny-public`;
const golden = JSON.parse(await Deno.readTextFile(`${modelDir}/search-golden.json`));
const { device } = await webGpu();

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("deno search-golden: normalized embeddings and cosine matrix", async () => {
  const r3 = await SearchR3.load(device, denoModelDir(modelDir));
  const queries = await r3.encode(golden.queries.map((q: any) => q.input), { kind: "query" });
  const docs = await r3.encode(golden.documents.map((d: any) => d.input));
  for (const [i, [got, ref]] of [...queries.map((q, i) => [q, golden.queries[i]]), ...docs.map((d, i) => [d, golden.documents[i]])].entries()) {
    const want: number[] = ref.hidden_normalized;
    const limit = 1e-4 * Math.max(...want.map(Math.abs));
    const err = maxAbsDiff(got, want);
    if (!(err <= limit)) throw new Error(`text ${i}: max abs error ${err} > ${limit}`);
  }
  const cos = cosineMatrix(queries, docs);
  const err = maxAbsDiff(cos.flat(), golden.cosine.flat());
  if (!(err <= 1e-4)) throw new Error(`cosine matrix: max abs error ${err} > 1e-4`);
});

Deno.test("deno search-golden: greedy reasoning tokens", async () => {
  const r3 = await SearchR3.load(device, denoModelDir(modelDir));
  for (const q of golden.queries) {
    const [r] = await r3.generate([q.input], { maxNewTokens: q.greedy.new_tokens.length, eosTokenIds: [] });
    const got = r.generation.ids;
    if (JSON.stringify(got) !== JSON.stringify(q.greedy.new_tokens)) {
      throw new Error(`"${q.input}": greedy ${got} != reference ${q.greedy.new_tokens}`);
    }
  }
});

Deno.test("deno: the README example runs and ranks with the golden cosines", async () => {
  const out = await example(modelDir);
  // The example's query and first document are search-golden.json's query 0 and document 0.
  if (!(Math.abs(out.scores[0] - golden.cosine[0][0]) <= 1e-4)) throw new Error(`score ${out.scores[0]} vs ${golden.cosine[0][0]}`);
  if (out.emittedEmbedToken !== false) throw new Error("the random model should not emit the embed token");
  const readme = await Deno.readTextFile(`${repo}/README.md`);
  const source = await Deno.readTextFile(`${repo}/examples/deno-example.ts`);
  if (!readme.includes(source)) throw new Error("README.md no longer shows examples/deno-example.ts verbatim");
});
