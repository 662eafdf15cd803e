// The attention kernels at the shapes the models run and in batched steps: every supported attention variant, of
// either slot, against the float64 reference of test/gpu-helpers.ts (its error bound is stated there), which reads
// the step's token table as the kernels do. Steps are planned by planSteps as the model plans them, so each
// sequence is a run of consecutive rows at consecutive positions of its own KV-cache slot. The golden sets with each
// variant, alone and batched: test/variants-golden.test.ts.
//
// Every cache row a token must not see holds large values (keys 50, values 1000): rows past each sequence's last
// position and every row of slots no sequence of the step uses. Any causal-mask or cross-slot leak dominates the
// output; rows of the output past the step's tokens must stay untouched.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Recorder } from "../src/gpu/recorder.ts";
import { planSteps } from "../src/model/batch.ts";
import { Attention, ATTENTION_VARIANTS, DECODE_MAX_ROWS, isSupported, type AttentionDims } from "../src/ops/index.ts";
import { assertClose, attentionRef, mulberry32, normalF32, readF32, testGpu, testKernels, uploadF32, uploadU32 } from "./gpu-helpers.ts";

const { device } = await testGpu();
const k = await testKernels();
// A variant's name is one kernel whichever slot it is registered for ("online" is today's kernel of both): each
// runs once.
const VARIANTS = ATTENTION_VARIANTS.filter((v, i, all) => isSupported(v, device) && all.findIndex((w) => w.name === v.name) === i);
/** The model's default prefillChunk: what the variants size their scratch by. */
const MAX_TOKENS = 256;

/** One sequence of a step: `rows` tokens at positions start, start + 1, ... of KV-cache slot `slot`. */
interface Seq {
  slot: number;
  start: number;
  rows: number;
}

/** Checks one step of `seqs` (in row order) through every supported variant. */
async function checkStep(t: test.TestContext, d: AttentionDims, seqs: Seq[], seed: number): Promise<void> {
  const T = seqs.reduce((n, s) => n + s.rows, 0);
  const plans = planSteps(seqs.map((s) => ({ slot: s.slot, start: s.start, ids: new Uint32Array(s.rows) })), T);
  assert.equal(plans.length, 1, "one step");
  const { step, tokens } = plans[0];
  const slots = Math.max(...seqs.map((s) => s.slot)) + 2; // one more slot than the step uses, never to be read
  const slotLen = Math.max(...seqs.map((s) => s.start + s.rows)) + 30;
  const kvDim = d.nKv * d.headDim, qDim = d.nHeads * d.headDim;
  const rand = mulberry32(seed);
  const q = normalF32(rand, T * qDim);
  const kc = normalF32(rand, slots * slotLen * kvDim);
  const vc = normalF32(rand, slots * slotLen * kvDim);
  for (let slot = 0; slot < slots; slot++) {
    const used = Math.max(0, ...seqs.filter((s) => s.slot === slot).map((s) => s.start + s.rows));
    kc.fill(50, (slot * slotLen + used) * kvDim, (slot + 1) * slotLen * kvDim);
    vc.fill(1000, (slot * slotLen + used) * kvDim, (slot + 1) * slotLen * kvDim);
  }
  const { out: ref, bound } = attentionRef(q, kc, vc, tokens, slotLen, d);
  const b = { tokens: uploadU32(device, tokens, "tokens"), q: uploadF32(device, q, "q"), kCache: uploadF32(device, kc, "k cache"), vCache: uploadF32(device, vc, "v cache"), slotLen };
  try {
    for (const v of VARIANTS) {
      await t.test(v.name, async () => {
        const out = uploadF32(device, new Float32Array((T + 1) * qDim).fill(-7), "out");
        const op = new Attention(k, "test", b, out, d, { decode: v, prefill: v }, { maxTokens: MAX_TOKENS, maxKeys: slotLen });
        try {
          await k.compiled();
          const rec = new Recorder(device);
          op.encode(rec, step);
          rec.submit();
          const got = await readF32(device, out, (T + 1) * qDim);
          assertClose(got.subarray(0, T * qDim), ref, (i) => bound[i], `attention ${v.name}`);
          assert.ok(got.subarray(T * qDim).every((x) => x === -7), "out rows past T untouched");
        } finally {
          op.destroy();
          out.destroy();
        }
      });
    }
  } finally {
    for (const buf of [b.tokens, b.q, b.kCache, b.vCache]) buf.destroy();
  }
}

const QWEN_05B: AttentionDims = { nHeads: 14, nKv: 2, headDim: 64 };
const QWEN_15B: AttentionDims = { nHeads: 12, nKv: 2, headDim: 128 };
const SHAPES = [["Qwen2.5-0.5B (14/2 heads, D=64)", QWEN_05B], ["Qwen2.5-1.5B (12/2 heads, D=128)", QWEN_15B]] as const;

// Real shapes: one sequence's decode at growing contexts and its prefill from an empty cache and after a prefix.
for (const [name, d] of SHAPES) {
  for (const keys of [1, 100, 1024, 4000]) {
    test(`attention ${name}: decode at context ${keys}`, async (t) => {
      await checkStep(t, d, [{ slot: 0, start: keys - 1, rows: 1 }], 100 + keys);
    });
  }
  for (const T of [128, 256]) {
    for (const start of [0, 100]) {
      test(`attention ${name}: prefill T=${T} at positions ${start}..${start + T - 1}`, async (t) => {
        await checkStep(t, d, [{ slot: 0, start, rows: T }], 200 + T + start);
      });
    }
  }
}

// Batched steps: each token at its own slot and position.
for (const [name, d] of SHAPES) {
  test(`attention ${name}: decode of 3 sequences at contexts 1, 700, 2000 in slots 1, 2, 0`, async (t) => {
    await checkStep(t, d, [{ slot: 1, start: 0, rows: 1 }, { slot: 2, start: 699, rows: 1 }, { slot: 0, start: 1999, rows: 1 }], 301);
  });

  test(`attention ${name}: decode of ${DECODE_MAX_ROWS} sequences at contexts 1..3001, slots in reverse order`, async (t) => {
    const seqs = Array.from({ length: DECODE_MAX_ROWS }, (_, i) => ({ slot: DECODE_MAX_ROWS - 1 - i, start: (i * 200 + i * i * 3) % 3001, rows: 1 }));
    await checkStep(t, d, seqs, 302);
  });

  test(`attention ${name}: packed prefill of 3 prompts of 5, 40, 90 tokens in slots 2, 0, 1 (tiles straddle prompts)`, async (t) => {
    await checkStep(t, d, [{ slot: 2, start: 0, rows: 5 }, { slot: 0, start: 0, rows: 40 }, { slot: 1, start: 0, rows: 90 }], 303);
  });

  test(`attention ${name}: a prompt chunk after a cached prefix between two decode tokens`, async (t) => {
    await checkStep(t, d, [{ slot: 0, start: 500, rows: 1 }, { slot: 3, start: 64, rows: 37 }, { slot: 1, start: 9, rows: 1 }], 304);
  });
}

// Odd shapes: 13 query heads on one KV head at D=256 (more than one workgroup's heads: uneven parts of the group),
// and D=48 with 10/5 heads (no power of two anywhere).
for (const d of [{ nHeads: 13, nKv: 1, headDim: 256 }, { nHeads: 10, nKv: 5, headDim: 48 }]) {
  const name = `${d.nHeads}/${d.nKv} heads, D=${d.headDim}`;
  test(`attention ${name}: decode of 3 sequences at contexts 1, 150, 333`, async (t) => {
    await checkStep(t, d, [{ slot: 0, start: 149, rows: 1 }, { slot: 2, start: 0, rows: 1 }, { slot: 1, start: 332, rows: 1 }], 401 + d.headDim);
  });

  test(`attention ${name}: packed prefill of 2 prompts of 3 and 21 tokens, the second after a prefix of 40`, async (t) => {
    await checkStep(t, d, [{ slot: 1, start: 0, rows: 3 }, { slot: 0, start: 40, rows: 21 }], 402 + d.headDim);
  });
}
