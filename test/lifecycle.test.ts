// Owning GPU memory: a process can load a model, use it, free it and load again, and its GPU buffers come back
// to where they started, for the model itself, the engine, SearchR3 and a random-weight model alike.
import assert from "node:assert/strict";
import { test } from "node:test";
import { nodeModelDir } from "../src/io/node.ts";
import { Qwen2Model } from "../src/model/qwen2.ts";
import { QWEN25_SHAPES } from "../src/model/shapes.ts";
import { SearchR3 } from "../src/search/searchr3.ts";
import { Engine } from "../src/text/engine.ts";
import { testGpu } from "./gpu-helpers.ts";
import { embeddedModelDir } from "./shared-paths.ts";

const { device } = await testGpu();

/** Counts the buffers created on the device and not yet destroyed (wrapping createBuffer and destroy). */
const live = new Set<GPUBuffer>();
const create = device.createBuffer.bind(device);
device.createBuffer = (desc) => {
  const buffer = create(desc);
  live.add(buffer);
  const destroy = buffer.destroy.bind(buffer);
  buffer.destroy = () => {
    live.delete(buffer);
    destroy();
  };
  return buffer;
};

const dir = nodeModelDir(embeddedModelDir());

async function cycles(what: string, once: () => Promise<void>): Promise<void> {
  const before = live.size;
  for (let i = 0; i < 3; i++) {
    await once();
    await device.queue.onSubmittedWorkDone();
    assert.equal(live.size, before, `${what}, cycle ${i + 1}: ${live.size - before} buffers left alive (${[...live].slice(0, 5).map((b) => b.label).join(", ")})`);
  }
}

test("Qwen2Model: load, prefill with captures and logits, decode, destroy; three times", async () => {
  await cycles("Qwen2Model", async () => {
    const model = await Qwen2Model.load(device, dir, { maxSeqLen: 64 });
    assert.ok(live.size > 10, "the model holds buffers while loaded");
    await model.prefill([1, 2, 3], { capture: ["embed", "final_norm"], logits: true });
    await model.step();
    await model.stepWithLogits(undefined, true);
    model.destroy();
  });
});

test("Qwen2Model with random weights at a split binding limit: build and destroy; three times", async () => {
  const cfg = { ...QWEN25_SHAPES["qwen2.5-0.5b"], numLayers: 1, vocabSize: 5000 };
  await cycles("random model", async () => {
    const model = await Qwen2Model.random(device, cfg, 1, { maxSeqLen: 16, maxBindingBytes: 1 << 20 });
    await model.prefill([1, 2]);
    model.destroy();
  });
});

test("Engine and SearchR3: load, generate or encode, destroy; three times", async () => {
  await cycles("Engine", async () => {
    const engine = await Engine.load(device, dir, { maxSeqLen: 64 });
    await engine.generate("hello", { maxNewTokens: 3 });
    engine.destroy();
  });
  await cycles("SearchR3", async () => {
    const r3 = await SearchR3.load(device, dir, { maxLength: 128 });
    await r3.encode(["a document"]);
    r3.destroy();
  });
});

test("a load that fails midway leaves no buffer behind", async () => {
  const before = live.size;
  // The tiny model's config with too few KV heads' worth of weights: found at the first k_proj.
  const bad = { ...dir, name: dir.name, exists: dir.exists, readText: async (file: string) => {
    const text = await dir.readText(file);
    return file === "config.json" ? JSON.stringify({ ...JSON.parse(text), num_key_value_heads: 4 }) : text;
  }, open: dir.open };
  await assert.rejects(Qwen2Model.load(device, bad), /k_proj\.weight" has shape \[32,64\], but config\.json implies \[64,64\]/);
  assert.equal(live.size, before);
});
