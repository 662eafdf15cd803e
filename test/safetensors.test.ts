import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { MAX_TEXT_BYTES, readJson, type ByteSource } from "../src/io/files.ts";
import { nodeModelDir, openNodeFile } from "../src/io/node.ts";
import { openModelWeights, openSafetensors, readTensor, streamTensor, type TensorInfo } from "../src/model/safetensors.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const goldenDir = process.env.R3GPU_GOLDEN_DIR ?? path.resolve(repoRoot, "../shared/golden");

interface TensorSpec {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

interface BuildOptions {
  metadata?: unknown;
  /** Edits the header object after data_offsets are assigned, to corrupt it. */
  mutateHeader?: (header: Record<string, any>) => void;
  /** Replaces the header text entirely. */
  headerText?: string;
}

/** Lays tensors out back to back, as the reference writer does, with the header space-padded to 8 bytes. */
function buildSafetensors(tensors: Record<string, TensorSpec>, opts: BuildOptions = {}): Uint8Array {
  const header: Record<string, any> = {};
  if (opts.metadata !== undefined) header.__metadata__ = opts.metadata;
  let pos = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.data.length] };
    pos += t.data.length;
  }
  opts.mutateHeader?.(header);
  let text = opts.headerText ?? JSON.stringify(header);
  text += " ".repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + headerBytes.length + pos);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of Object.values(tensors)) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

function u16(values: number[]): Uint8Array {
  const out = new Uint8Array(2 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(2 * i, v, true));
  return out;
}

function f32(values: number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return out;
}

function i32(values: number[]): Uint8Array {
  const out = new Uint8Array(4 * values.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setInt32(4 * i, v, true));
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const tmpRoot = mkdtemp(path.join(tmpdir(), "r3gpu-safetensors-"));
let fileCounter = 0;
after(async () => rm(await tmpRoot, { recursive: true, force: true }));

/** Closes the files that a map of tensors reads from, as a loader does when it is done with them. */
async function closeAll(tensors: Map<string, TensorInfo>): Promise<void> {
  await Promise.all([...new Set([...tensors.values()].map((t) => t.source))].map((s) => s.close()));
}

async function writeTemp(bytes: Uint8Array, name = `t${fileCounter++}.safetensors`, dir?: string): Promise<string> {
  const file = path.join(dir ?? (await tmpRoot), name);
  await writeFile(file, bytes);
  return file;
}

/** Writes the bytes and asserts that opening them fails with a message naming the file and matching `problem`. */
async function assertRejects(bytes: Uint8Array, problem: RegExp): Promise<void> {
  const file = await writeTemp(bytes);
  await assert.rejects(
    async () => openSafetensors(await openNodeFile(file)),
    (e: Error) => {
      assert.match(e.message, new RegExp(escapeRegExp(file)));
      assert.match(e.message, problem);
      return true;
    },
  );
}

// bf16 is the top half of float32, so these bit patterns have known values.
const BF16_BITS = [0x3f80, 0xc000, 0x4049, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x0000];
const BF16_VALUES = [1, -2, 3.140625, 2 ** -133, Infinity, -Infinity, NaN, -0, 0];

// Includes the smallest and largest half subnormals, the smallest normal and the largest finite half.
const F16_BITS = [0x3c00, 0xc000, 0x3555, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x8001];
const F16_VALUES = [1, -2, 1365 / 4096, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 65504, Infinity, -Infinity, NaN, -0, -(2 ** -24)];

const F32_VALUES = [1.5, -0.25, 2 ** -149, 3.4028234663852886e38, -0, 1e-3];
const I32_VALUES = [-1, 0, 2147483647, -2147483648, 123456, 7];

function validFile(): Uint8Array {
  return buildSafetensors(
    {
      "w.bf16": { dtype: "BF16", shape: [3, 3], data: u16(BF16_BITS) },
      "w.f16": { dtype: "F16", shape: [12], data: u16(F16_BITS) },
      "w.f32": { dtype: "F32", shape: [2, 3], data: f32(F32_VALUES) },
      "w.i32": { dtype: "I32", shape: [6], data: i32(I32_VALUES) },
      empty: { dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
    },
    { metadata: { format: "pt" } },
  );
}

test("a valid file round-trips every dtype exactly", async () => {
  const file = await writeTemp(validFile());
  const st = await openSafetensors(await openNodeFile(file));
  after(() => st.source.close());
  assert.deepEqual(st.metadata, { format: "pt" });
  assert.deepEqual([...st.tensors.keys()].sort(), ["empty", "w.bf16", "w.f16", "w.f32", "w.i32"]);

  const bf16 = st.tensors.get("w.bf16")!;
  assert.equal(bf16.dtype, "BF16");
  assert.deepEqual(bf16.shape, [3, 3]);
  assert.equal(bf16.byteLength, 18);
  const bytes = await readFile(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  assert.equal(bf16.offset, 8 + headerLen);

  const read = async (name: string) => {
    const out = await readTensor(st.tensors.get(name)!);
    return { type: out.constructor, values: Array.from(out) };
  };
  // deepEqual on plain arrays compares with Object.is, so NaN and -0 are checked too.
  assert.deepEqual(await read("w.bf16"), { type: Float32Array, values: BF16_VALUES });
  assert.deepEqual(await read("w.f16"), { type: Float32Array, values: F16_VALUES });
  assert.deepEqual(await read("w.f32"), { type: Float32Array, values: F32_VALUES.map(Math.fround) });
  assert.deepEqual(await read("w.i32"), { type: Int32Array, values: I32_VALUES });
  assert.deepEqual(await read("empty"), { type: Float32Array, values: [] });
});

test("openSafetensors reads only the header bytes", async () => {
  const bytes = validFile();
  const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const reads: [number, number][] = [];
  const source: ByteSource = {
    name: "memory.safetensors",
    size: bytes.length,
    async read(offset, length) {
      reads.push([offset, length]);
      return bytes.slice(offset, offset + length);
    },
    async close() {},
  };
  await openSafetensors(source);
  for (const [offset, length] of reads) assert.ok(offset + length <= headerEnd, `read [${offset}, +${length}) past the header`);
});

test("streamTensor yields the tensor's bytes in order, in chunks of at most chunkBytes", async () => {
  const values = Array.from({ length: 10 }, (_, i) => i * 1000 - 3);
  const file = await writeTemp(
    buildSafetensors({
      before: { dtype: "F16", shape: [3], data: u16([1, 2, 3]) },
      t: { dtype: "I32", shape: [10], data: i32(values) },
    }),
  );
  const st = await openSafetensors(await openNodeFile(file));
  after(() => st.source.close());
  const chunks: { at: number; bytes: Uint8Array }[] = [];
  await streamTensor(
    st.tensors.get("t")!,
    async (bytes, at) => {
      await new Promise((r) => setTimeout(r, 1));
      chunks.push({ at, bytes: bytes.slice() });
    },
    7,
  );
  assert.deepEqual(
    chunks.map((c) => [c.at, c.bytes.length]),
    [[0, 7], [7, 7], [14, 7], [21, 7], [28, 7], [35, 5]],
  );
  assert.deepEqual(Buffer.concat(chunks.map((c) => c.bytes)), Buffer.from(i32(values)));

  const calls: number[] = [];
  await streamTensor({ ...st.tensors.get("t")!, byteLength: 0 }, (_, at) => void calls.push(at));
  assert.deepEqual(calls, []);
});

test("rejects a file shorter than 8 bytes", async () => {
  await assertRejects(new Uint8Array(5), /file of 5 bytes is too short.*truncated/);
});

test("rejects a header length beyond the file, including one above 2^53", async () => {
  const bytes = validFile();
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 100000n, true);
  await assertRejects(bytes, new RegExp(`header length 100000 beyond the file of ${bytes.length} bytes`));
  view.setBigUint64(0, 2n ** 60n, true);
  await assertRejects(bytes, new RegExp(`header length ${2n ** 60n} beyond the file of ${bytes.length} bytes`));
});

test("rejects a header that is not JSON or not an object", async () => {
  await assertRejects(buildSafetensors({}, { headerText: "{not json" }), /header is not valid JSON/);
  await assertRejects(buildSafetensors({}, { headerText: "[1, 2]" }), /header is not a JSON object/);
  await assertRejects(buildSafetensors({}, { headerText: "null" }), /header is not a JSON object/);
});

test("rejects bad metadata", async () => {
  await assertRejects(buildSafetensors({}, { metadata: { format: 3 } }), /__metadata__ entry "format" is not a string/);
});

test("rejects tensor entries with missing fields or bad types", async () => {
  const one = (mutate: (t: Record<string, any>) => void) =>
    buildSafetensors({ a: { dtype: "F32", shape: [2], data: f32([1, 2]) } }, { mutateHeader: (h) => mutate(h.a) });
  await assertRejects(
    buildSafetensors({}, { mutateHeader: (h) => (h.a = 5) }),
    /tensor "a": entry is not an object/,
  );
  await assertRejects(one((t) => delete t.dtype), /tensor "a": missing or non-string dtype/);
  await assertRejects(one((t) => delete t.shape), /tensor "a": shape must be an array of non-negative integers/);
  await assertRejects(one((t) => (t.shape = [-2])), /tensor "a": shape must be .* \(got \[-2\]\)/);
  await assertRejects(one((t) => (t.shape = [1.5])), /tensor "a": shape must be .* \(got \[1\.5\]\)/);
  await assertRejects(one((t) => (t.shape = "2")), /tensor "a": shape must be/);
  await assertRejects(one((t) => delete t.data_offsets), /tensor "a": data_offsets must be/);
  await assertRejects(one((t) => (t.data_offsets = [0, 4, 8])), /tensor "a": data_offsets must be .* \(got \[0,4,8\]\)/);
  await assertRejects(one((t) => (t.data_offsets = [8, 0])), /tensor "a": data_offsets must be .*begin <= end \(got \[8,0\]\)/);
  await assertRejects(one((t) => (t.data_offsets = [-1, 7])), /tensor "a": data_offsets must be/);
});

test("rejects unknown and unsupported dtypes, naming them", async () => {
  for (const dtype of ["Q4", "F64", "I64", "U8"]) {
    await assertRejects(
      buildSafetensors({ a: { dtype, shape: [8], data: new Uint8Array(8) } }),
      new RegExp(`tensor "a": unsupported dtype "${dtype}" \\(supported: BF16, F16, F32, I32\\)`),
    );
  }
});

test("rejects a byte range that disagrees with dtype × shape", async () => {
  await assertRejects(
    buildSafetensors({ a: { dtype: "F32", shape: [2, 3], data: new Uint8Array(20) } }),
    /tensor "a": data offsets \[0,20\] hold 20 bytes, which disagrees with dtype × shape \(F32 × \[2,3\] = 24 bytes\)/,
  );
});

test("rejects data offsets beyond the data section (truncated file)", async () => {
  const bytes = buildSafetensors({
    a: { dtype: "F32", shape: [2], data: f32([1, 2]) },
    b: { dtype: "F32", shape: [2], data: f32([3, 4]) },
  });
  await assertRejects(
    bytes.subarray(0, bytes.length - 4),
    /tensor "b": data offsets \[8,16\] out of range: data section has 12 bytes \(file truncated\?\)/,
  );
});

test("rejects overlapping tensors, naming both", async () => {
  const tensors = {
    a: { dtype: "F32", shape: [4], data: new Uint8Array(16) },
    b: { dtype: "F32", shape: [1], data: new Uint8Array(4) },
    c: { dtype: "F32", shape: [2], data: new Uint8Array(8) },
  };
  await assertRejects(
    buildSafetensors(tensors, { mutateHeader: (h) => (h.c.data_offsets = [12, 20]) }),
    /tensors "a" \[0,16\] and "c" \[12,20\] have overlapping data offsets/,
  );
  // A range lying wholly inside another.
  await assertRejects(
    buildSafetensors(tensors, { mutateHeader: (h) => (h.b.data_offsets = [8, 12]) }),
    /tensors "a" \[0,16\] and "b" \[8,12\] have overlapping data offsets/,
  );
});

test("zero-size tensors may share an offset with other tensors", async () => {
  const file = await writeTemp(
    buildSafetensors(
      {
        a: { dtype: "F32", shape: [2], data: f32([1, 2]) },
        z: { dtype: "BF16", shape: [3, 0], data: new Uint8Array(0) },
      },
      { mutateHeader: (h) => (h.z.data_offsets = [4, 4]) },
    ),
  );
  const st = await openSafetensors(await openNodeFile(file));
  after(() => st.source.close());
  assert.equal(st.tensors.get("z")!.byteLength, 0);
});

async function shardedDir(weightMap: Record<string, string>, shards: Record<string, Record<string, TensorSpec>>) {
  const dir = await mkdtemp(path.join(await tmpRoot, "sharded-"));
  await writeFile(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  for (const [name, tensors] of Object.entries(shards)) await writeTemp(buildSafetensors(tensors), name, dir);
  return dir;
}

const SHARD1 = "model-00001-of-00002.safetensors";
const SHARD2 = "model-00002-of-00002.safetensors";

test("openModelWeights merges the shards of an index", async () => {
  const dir = await shardedDir(
    { a: SHARD1, b: SHARD1, c: SHARD2 },
    {
      [SHARD1]: {
        a: { dtype: "F32", shape: [2], data: f32([1, 2]) },
        b: { dtype: "I32", shape: [1], data: i32([42]) },
      },
      [SHARD2]: { c: { dtype: "BF16", shape: [2], data: u16([0x3f80, 0xc000]) } },
    },
  );
  const weights = await openModelWeights(nodeModelDir(dir));
  after(() => closeAll(weights));
  assert.deepEqual([...weights.keys()].sort(), ["a", "b", "c"]);
  assert.equal(weights.get("c")!.source.name, path.join(dir, SHARD2));
  assert.deepEqual(Array.from(await readTensor(weights.get("a")!)), [1, 2]);
  assert.deepEqual(Array.from(await readTensor(weights.get("b")!)), [42]);
  assert.deepEqual(Array.from(await readTensor(weights.get("c")!)), [1, -2]);
});

test("openModelWeights opens a single model.safetensors", async () => {
  const dir = await mkdtemp(path.join(await tmpRoot, "single-"));
  await writeTemp(validFile(), "model.safetensors", dir);
  const weights = await openModelWeights(nodeModelDir(dir));
  after(() => closeAll(weights));
  assert.equal(weights.size, 5);
  assert.deepEqual(Array.from(await readTensor(weights.get("w.i32")!)), I32_VALUES);
});

test("openModelWeights rejects a tensor missing from its shard", async () => {
  const dir = await shardedDir(
    { a: SHARD1, missing: SHARD1, c: SHARD2 },
    {
      [SHARD1]: { a: { dtype: "F32", shape: [1], data: f32([1]) } },
      [SHARD2]: { c: { dtype: "F32", shape: [1], data: f32([2]) } },
    },
  );
  await assert.rejects(
    openModelWeights(nodeModelDir(dir)),
    new RegExp(`model\\.safetensors\\.index\\.json: tensor "missing" is listed in ${escapeRegExp(SHARD1)}, but ${escapeRegExp(path.join(dir, SHARD1))} does not contain it`),
  );
});

test("openModelWeights rejects a tensor present in two shards", async () => {
  const dir = await shardedDir(
    { a: SHARD1, c: SHARD2 },
    {
      [SHARD1]: { a: { dtype: "F32", shape: [1], data: f32([1]) } },
      [SHARD2]: { a: { dtype: "F32", shape: [1], data: f32([1]) }, c: { dtype: "F32", shape: [1], data: f32([2]) } },
    },
  );
  await assert.rejects(
    openModelWeights(nodeModelDir(dir)),
    new RegExp(`tensor "a" appears in both ${escapeRegExp(path.join(dir, SHARD1))} and ${escapeRegExp(path.join(dir, SHARD2))}`),
  );
});

test("openModelWeights reports a bad shard by its file name, and a directory without weights", async () => {
  const dir = await shardedDir({ a: SHARD1 }, { [SHARD1]: { a: { dtype: "F64", shape: [1], data: new Uint8Array(8) } } });
  await assert.rejects(
    openModelWeights(nodeModelDir(dir)),
    new RegExp(`${escapeRegExp(path.join(dir, SHARD1))}: tensor "a": unsupported dtype "F64"`),
  );
  const empty = await mkdtemp(path.join(await tmpRoot, "empty-"));
  await assert.rejects(openModelWeights(nodeModelDir(empty)), /neither model\.safetensors nor model\.safetensors\.index\.json/);
});

test("reads the shared golden tiny-public files", async () => {
  const tiny = path.join(goldenDir, "tiny-public");
  const model = await openModelWeights(nodeModelDir(tiny));
  after(() => closeAll(model));
  const embed = model.get("model.embed_tokens.weight")!;
  assert.equal(embed.dtype, "BF16");
  assert.deepEqual(embed.shape, [151936, 64]);

  const golden = await openSafetensors(await openNodeFile(path.join(tiny, "golden.safetensors")));
  after(() => golden.source.close());
  const ids = golden.tensors.get("seq1.input_ids")!;
  assert.equal(ids.dtype, "I32");
  const values = await readTensor(ids);
  assert.ok(values instanceof Int32Array);
  assert.equal(values.length, 7);
  const json = JSON.parse(await readFile(path.join(tiny, "golden.json"), "utf8"));
  assert.deepEqual(Array.from(values), json.sequences[1].input_ids);
});

/** A file with this header text and `dataLength` zero bytes of data, its header not padded. */
function rawFile(headerText: string, dataLength: number): Uint8Array {
  const json = Buffer.from(headerText, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataLength)]);
}

test("rejects a header that starts with a byte-order mark or a space, as the reference reader does", async () => {
  const header = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
  await assertRejects(rawFile(`\uFEFF${header}`, 4), /header starts with a UTF-8 byte-order mark/);
  await assertRejects(rawFile(` ${header}`, 4), /header does not start with "\{"/);
  // Trailing spaces are the format's padding.
  const file = await writeTemp(rawFile(`${header}   `, 4));
  const st = await openSafetensors(await openNodeFile(file));
  after(() => st.source.close());
  assert.equal(st.tensors.get("a")!.byteLength, 4);
});

test("rejects a key given twice, which JSON.parse would resolve silently to the last", async () => {
  const a = '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  await assertRejects(rawFile(`{${a},${a}}`, 4), /header has the key "a" twice/);
  await assertRejects(rawFile('{"a":{"dtype":"F64","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4),
    /header has the key "dtype" twice in "a"/);
  // The same key in two different objects is no repetition; escaped quotes in keys are read as JSON reads them.
  const file = await writeTemp(rawFile('{"b\\"c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"dtype":"x"}}', 4));
  const st = await openSafetensors(await openNodeFile(file));
  after(() => st.source.close());
  assert.deepEqual([...st.tensors.keys()], ['b"c']);
});

test("rejects data that belongs to no tensor: a gap between tensors, at the start, or after the last", async () => {
  const entry = (name: string, begin: number) => `"${name}":{"dtype":"F32","shape":[1],"data_offsets":[${begin},${begin + 4}]}`;
  await assertRejects(rawFile(`{${entry("a", 0)},${entry("b", 8)}}`, 12),
    /4 bytes of the data section at \[4,8\] belong to no tensor \(a gap after "a", before "b"\)/);
  await assertRejects(rawFile(`{${entry("a", 4)}}`, 8), /4 bytes of the data section at \[0,4\] belong to no tensor \(a gap at the start, before "a"\)/);
  await assertRejects(rawFile(`{${entry("a", 0)}}`, 6), /2 bytes after the last tensor's data belong to no tensor/);
});

test("a header that is not JSON is refused without echoing its bytes", async () => {
  const file = await writeTemp(rawFile("{secret-value-42}", 0));
  await assert.rejects(async () => openSafetensors(await openNodeFile(file)), (e: Error) => {
    assert.match(e.message, /header is not valid JSON/);
    assert.doesNotMatch(e.message, /secret/);
    return true;
  });
});

test("openModelWeights refuses shard paths that leave the model folder, and links within it are followed", async () => {
  const shard = buildSafetensors({ a: { dtype: "F32", shape: [1], data: f32([7]) } });
  const root = await mkdtemp(path.join(await tmpRoot, "escape-"));
  const dir = path.join(root, "model");
  await mkdir(dir);
  await writeFile(path.join(root, "outside.safetensors"), shard);
  const index = (to: string) => writeFile(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: to } }));
  for (const to of ["../outside.safetensors", path.join(root, "outside.safetensors"), "/etc/passwd", "sub/../../outside.safetensors",
    "", "C:\\outside.safetensors", "..\\outside.safetensors"]) {
    await index(to);
    await assert.rejects(openModelWeights(nodeModelDir(dir)), (e: Error) => {
      assert.match(e.message, new RegExp(`model\\.safetensors\\.index\\.json: weight_map entry "a" names the shard "${escapeRegExp(to)}", which is not a file inside the model folder`));
      // Nothing of /etc/passwd (which starts "root:") is read, so nothing of it can be reported.
      assert.doesNotMatch(e.message, /root:|header length/);
      return true;
    });
  }
  // The Hugging Face cache links a snapshot's files to blobs outside it: a link is followed, a path is not.
  await symlink(path.join(root, "outside.safetensors"), path.join(dir, "linked.safetensors"));
  await index("linked.safetensors");
  const linked = await openModelWeights(nodeModelDir(dir));
  after(() => closeAll(linked));
  assert.deepEqual(Array.from(await readTensor(linked.get("a")!)), [7]);
});

test("a directory, a FIFO or a device in place of a file is refused by name, without waiting", async () => {
  const dir = await mkdtemp(path.join(await tmpRoot, "special-"));
  await mkdir(path.join(dir, "model.safetensors"));
  // Node's own error for reading a directory (EISDIR) names no file.
  await assert.rejects(openNodeFile(path.join(dir, "model.safetensors")), new RegExp(`${escapeRegExp(path.join(dir, "model.safetensors"))}: is a directory, not a regular file`));
  await assert.rejects(nodeModelDir(dir).readText("model.safetensors"), /model\.safetensors: is a directory/);
  // Opening a FIFO for reading waits for a writer: without O_NONBLOCK this would hang.
  execFileSync("mkfifo", [path.join(dir, "config.json")]);
  await assert.rejects(nodeModelDir(dir).readText("config.json"), /config\.json: is a FIFO, not a regular file/);
  await symlink("/dev/zero", path.join(dir, "tokenizer.json"));
  await assert.rejects(nodeModelDir(dir).readText("tokenizer.json"), /tokenizer\.json: is a device, not a regular file/);
  await assert.rejects(openNodeFile(path.join(dir, "tokenizer.json")), /tokenizer\.json: is a device/);
});

test("readText reads at most its size bound, and refuses text that is not UTF-8", async () => {
  const dir = await mkdtemp(path.join(await tmpRoot, "text-"));
  await writeFile(path.join(dir, "config.json"), '{"a": "0123456789"}');
  const models = nodeModelDir(dir);
  assert.equal(await models.readText("config.json", 19), '{"a": "0123456789"}');
  await assert.rejects(models.readText("config.json", 18), /config\.json: 19 bytes is more than the 18 bytes read from a text file/);
  assert.equal(MAX_TEXT_BYTES, 128 * 1024 * 1024);
  await writeFile(path.join(dir, "bad.json"), Buffer.from([0x7b, 0xff, 0x7d]));
  await assert.rejects(readJson(models, "bad.json"), /bad\.json: not valid UTF-8 text/);
});
