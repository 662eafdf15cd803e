// The browser ModelDirs (src/io/browser.ts), run under Node, whose File, Blob and fetch behave as the browser's:
// a picked folder's files, and a folder served over HTTP with Range requests.
import assert from "node:assert/strict";
import { open, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pickedFolderModelDir, urlModelDir } from "../src/io/browser.ts";
import { serveStatic, type StaticServer } from "./static-server.ts";

/** A File as `<input webkitdirectory>` gives it (Node's File has no webkitRelativePath of its own). */
function pickedFile(path: string, content: string | Uint8Array<ArrayBuffer>): File {
  const file = new File([content], path.slice(path.lastIndexOf("/") + 1));
  Object.defineProperty(file, "webkitRelativePath", { value: path });
  return file;
}

const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);

describe("pickedFolderModelDir", () => {
  const dir = pickedFolderModelDir([
    pickedFile("my-model/config.json", '{"a": 1}'),
    pickedFile("my-model/model.safetensors", bytes),
    pickedFile("my-model/sub/extra.txt", "x"),
  ]);

  test("names the folder and strips it from the paths", async () => {
    assert.equal(dir.name, "my-model");
    assert.equal(await dir.exists("config.json"), true);
    assert.equal(await dir.exists("sub/extra.txt"), true);
    assert.equal(await dir.exists("my-model/config.json"), false);
    assert.equal(await dir.readText("config.json"), '{"a": 1}');
  });

  test("reads slices", async () => {
    const source = await dir.open("model.safetensors");
    assert.equal(source.name, "my-model/model.safetensors");
    assert.equal(source.size, 256);
    assert.deepEqual(await source.read(10, 5), bytes.subarray(10, 15));
    assert.deepEqual(await source.read(256, 0), new Uint8Array(0));
    await assert.rejects(source.read(250, 10), /my-model\/model\.safetensors: unexpected end of file reading 10 bytes at byte 250 \(file has 256 bytes\)/);
  });

  test("a missing file is an error that names it", async () => {
    await assert.rejects(dir.open("tokenizer.json"), /my-model\/tokenizer\.json: no such file in the picked folder/);
    await assert.rejects(dir.readText("tokenizer.json"), /no such file/);
  });

  test("an empty pick is an error", () => {
    assert.throws(() => pickedFolderModelDir([]), /the picked folder is empty/);
  });
});

describe("urlModelDir", () => {
  let work: string;
  let server: StaticServer;
  let noRanges: StaticServer;
  // Past 4 GiB, where 32-bit offset arithmetic would wrap; the file is sparse.
  const FAR = 4.5 * 2 ** 30;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "r3gpu-browser-io-"));
    await writeFile(join(work, "config.json"), '{"a": 1}');
    await writeFile(join(work, "small.bin"), bytes);
    const big = await open(join(work, "big.bin"), "w");
    await big.write(bytes, 0, 256, FAR);
    await big.close();
    server = await serveStatic({ "/m/": work });
    noRanges = await serveStatic({ "/m/": work }, { ignoreRange: true });
  });

  after(async () => {
    await server?.close();
    await noRanges?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("exists and readText", async () => {
    const dir = urlModelDir(`${server.origin}/m`);
    assert.equal(dir.name, `${server.origin}/m`);
    assert.equal(await dir.exists("config.json"), true);
    assert.equal(await dir.exists("missing.json"), false);
    assert.equal(await dir.readText("config.json"), '{"a": 1}');
    await assert.rejects(dir.readText("missing.json"), /\/m\/missing\.json: HTTP 404/);
  });

  test("reads slices with Range requests, past 4 GiB too", async () => {
    const dir = urlModelDir(`${server.origin}/m/`);
    const small = await dir.open("small.bin");
    assert.equal(small.size, 256);
    assert.deepEqual(await small.read(10, 5), bytes.subarray(10, 15));
    assert.deepEqual(await small.read(256, 0), new Uint8Array(0));
    await assert.rejects(small.read(250, 10), /unexpected end of file reading 10 bytes at byte 250 \(file has 256 bytes\)/);

    const big = await dir.open("big.bin");
    assert.equal(big.size, FAR + 256);
    assert.deepEqual(await big.read(FAR + 100, 8), bytes.subarray(100, 108));
    const reads = server.requests.filter((r) => r.path === "/m/big.bin");
    assert.ok(reads.every((r) => r.status === 206 && r.bytes <= 8), JSON.stringify(reads));
  });

  test("a server that ignores Range requests is refused before it sends a whole file", async () => {
    const dir = urlModelDir(`${noRanges.origin}/m/`);
    await assert.rejects(dir.open("big.bin"), /answered a Range request with HTTP 200 and no Content-Range; loading from a URL needs a server that supports Range requests/);
    await assert.rejects(dir.open("missing.bin"), /HTTP 404/);
  });
});
