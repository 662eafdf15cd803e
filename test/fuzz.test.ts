// The fuzz harness (fuzz/): its classification checked on cases of known outcome, then the fixed-seed sample that CI
// runs, which must show no accepted-invalid input, unnamed error, crash, hang or excessive memory. `npm run fuzz`
// runs more (see README, Reliability).
import assert from "node:assert/strict";
import { test } from "node:test";
import { badCases, formatTable, runFuzz } from "../fuzz/run.ts";

test("the harness tells the outcomes apart, its time and memory bounds are real", { timeout: 180_000 }, async () => {
  const report = await runFuzz({ seed: 1, cases: { selftest: 7 }, timeoutMs: 5_000 });
  const seen = Object.fromEntries(report.notable.map((r) => [r.mutation, r.outcome]));
  // notable lists the bad outcomes and case 0; the clean error is counted only.
  assert.deepEqual(seen, {
    accepted: "accepted",
    "unnamed-error": "unnamed-error",
    hang: "hang",
    "excessive-memory (heap)": "excessive-memory",
    "excessive-memory (address space)": "excessive-memory",
    crash: "crash",
  });
  assert.equal(report.counts.selftest["clean-error"], 1);
});

// About 40 s of CPU in all: 150 file cases (4 of them loading the model onto the GPU) and 12 HTTP requests.
const SAMPLE = { safetensors: 40, config: 40, shards: 30, tokenizer: 40, http: 12 };

test("the CI fuzz sample (seed 1) finds no defect", { timeout: 600_000 }, async (t) => {
  const report = await runFuzz({ seed: 1, cases: SAMPLE, gpuEvery: 20 });
  t.diagnostic(`${report.seconds.toFixed(0)} s`);
  for (const line of formatTable(report).split("\n")) t.diagnostic(line);
  for (const [target, n] of Object.entries(SAMPLE)) {
    assert.equal(Object.values(report.counts[target]).reduce((a, b) => a + b, 0), n);
    // Case 0 is the unmutated seed: a harness that refused it would count every case as a clean error.
    assert.equal(report.notable.find((r) => r.target === target && r.index === 0)?.outcome, "accepted", target);
  }
  assert.deepEqual(badCases(report), []);
});
