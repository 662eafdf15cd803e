// `r3gpu download` against a local stand-in for the Hugging Face hub (test/hub-server.ts) that serves the shared tiny
// model: a full download, resumption after a dropped connection and after a killed process, size and hash checks.
// No request leaves 127.0.0.1.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { downloadModel, type HubDownloadProgress } from "../src/hub/download.ts";
import { COMMIT, startFakeHub, type FakeHub, type HubRequest } from "./hub-server.ts";
import { goldenDir, repoRoot } from "./shared-paths.ts";

const REPO = "r3gpu-test/tiny-public";
const source = join(goldenDir(), "tiny-public");
const names = (await readdir(source)).sort();
const MODEL = "model.safetensors";
const modelSize = (await stat(join(source, MODEL))).size;
const before = names.slice(0, names.indexOf(MODEL));
const later = names.slice(names.indexOf(MODEL) + 1);
const cli = join(repoRoot, "bin", "r3gpu.js");
const work = await mkdtemp(join(tmpdir(), "r3gpu-download-"));
after(() => rm(work, { recursive: true, force: true }));

let fresh = 0;
const freshDir = () => join(work, `model${fresh++}`);
const startHub = () => startFakeHub({ repo: REPO, dir: source, lfs: (p) => p.endsWith(".safetensors") });

function spawnDownload(hub: FakeHub, dir: string, ...args: string[]): ChildProcess {
  return spawn(process.execPath, [cli, "download", REPO, "--dir", dir, ...args], {
    cwd: repoRoot, env: { ...process.env, HF_ENDPOINT: hub.origin }, stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Runs `r3gpu download` to its end; the requests it made are those the hub logged meanwhile. */
async function download(hub: FakeHub, dir: string, ...args: string[]) {
  const from = hub.requests.length;
  const child = spawnDownload(hub, dir, ...args);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s) => (stderr += s));
  const [code] = await once(child, "close");
  return { code: code as number | null, stdout, stderr, requests: hub.requests.slice(from) };
}

const resolveUrl = (file: string) => `/${REPO}/resolve/${COMMIT}/${file}`;
const fetchesOf = (requests: HubRequest[], file: string) => requests.filter((r) => r.url === resolveUrl(file));

async function assertSameFiles(dir: string, files = names): Promise<void> {
  for (const f of files) assert.ok((await readFile(join(dir, f))).equals(await readFile(join(source, f))), `${f} differs`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

describe("r3gpu download", () => {
  test("downloads every listed file at the revision's commit, then finds nothing left to fetch", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const run = await download(hub, dir);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr.replace(/^Warning: .*\n/gm, ""), "", "no progress bar when stderr is not a terminal");
    assert.match(run.stdout, new RegExp(`^${REPO} at ${COMMIT} in ${dir}: 8 files, 28\\.2 MiB; fetched 28\\.2 MiB ` +
      "\\(8 downloaded, 0 resumed, 0 already complete\\)\\n$"));
    assert.deepEqual((await readdir(dir)).sort(), names, "no .part file is left");
    await assertSameFiles(dir);

    // The layout @huggingface/hub asks for: the commit, the file list at it, each file (a 1-byte probe, then all).
    const [info, tree, ...files] = run.requests;
    assert.match(info.url, new RegExp(`^/api/models/${REPO}/revision/main\\?.*expand=sha`));
    assert.equal(tree.url, `/api/models/${REPO}/tree/${COMMIT}?recursive=true&expand=false`);
    assert.deepEqual(files.map((r) => [r.method, r.url, r.range, r.status]),
      names.flatMap((f) => [["GET", resolveUrl(f), "bytes=0-0", 206], ["GET", resolveUrl(f), undefined, 200]]));

    const again = await download(hub, dir);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /fetched 0\.0 MiB \(0 downloaded, 0 resumed, 8 already complete\)/);
    assert.deepEqual(again.requests.map((r) => r.url.split("?")[0]),
      [`/api/models/${REPO}/revision/main`, `/api/models/${REPO}/tree/${COMMIT}`]);

    const check = spawn(process.execPath, [cli, "check", dir], { stdio: "ignore" });
    assert.equal((await once(check, "close"))[0], 0, "the downloaded folder passes r3gpu check");
  });

  test("a dropped connection leaves a .part that the next run resumes with a Range request", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    hub.cutAfter.set(MODEL, 5 << 20);
    const cut = await download(hub, dir);
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, new RegExp(`r3gpu download: ${MODEL}: download interrupted at \\d+ of ${modelSize} bytes .*; ` +
      "run it again to resume"));
    await assertSameFiles(dir, before);
    assert.equal(await exists(join(dir, MODEL)), false, "no truncated final file");
    const partSize = (await stat(join(dir, `${MODEL}.part`))).size;
    assert.ok(partSize > 0 && partSize <= 5 << 20, `.part holds ${partSize} bytes`);
    for (const f of later) assert.equal(await exists(join(dir, f)), false, `${f} was not reached`);

    const resumed = await download(hub, dir);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, new RegExp(`\\(${later.length} downloaded, 1 resumed, ${before.length} already complete\\)`));
    for (const f of before) assert.deepEqual(fetchesOf(resumed.requests, f), [], `${f} is not fetched again`);
    assert.deepEqual(fetchesOf(resumed.requests, MODEL).map((r) => [r.range, r.status]),
      [["bytes=0-0", 206], [`bytes=${partSize}-${modelSize - 1}`, 206]]);
    assert.deepEqual((await readdir(dir)).sort(), names);
    await assertSameFiles(dir);
  });

  test("a killed download resumes where its .part ends", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    hub.delayMs.set(MODEL, 10);
    const child = spawnDownload(hub, dir);
    const closed = once(child, "close");
    while (child.exitCode === null && (hub.sent.get(MODEL) ?? 0) < 2 << 20) await sleep(20);
    child.kill("SIGKILL");
    const [, signal] = await closed;
    assert.equal(signal, "SIGKILL", "the download finished before it could be killed");
    assert.equal(await exists(join(dir, MODEL)), false);
    const partSize = (await stat(join(dir, `${MODEL}.part`))).size;
    assert.ok(partSize > 0 && partSize < modelSize, `.part holds ${partSize} bytes`);

    hub.delayMs.clear();
    const resumed = await download(hub, dir);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(fetchesOf(resumed.requests, MODEL).at(-1)!.range, `bytes=${partSize}-${modelSize - 1}`);
    await assertSameFiles(dir);
  });

  test("a file whose size differs from the listing is refused, and nothing is written for it", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const real = (await stat(join(source, "config.json"))).size;
    hub.listedSize.set("config.json", real + 42);
    const run = await download(hub, dir);
    assert.equal(run.code, 1);
    assert.match(run.stderr, new RegExp(`r3gpu download: config\\.json: size mismatch: the file list of ${REPO} says ` +
      `${real + 42} bytes, but ${hub.origin} serves ${real}`));
    assert.deepEqual(await readdir(dir), []);
  });

  test("an LFS file whose SHA-256 differs from the listing is removed", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    hub.listedSha256.set(MODEL, "0".repeat(64));
    const run = await download(hub, dir);
    assert.equal(run.code, 1);
    assert.match(run.stderr, new RegExp(`${MODEL}: SHA-256 [0-9a-f]{64} differs from the hub's 0{64}; the file was removed`));
    assert.equal(await exists(join(dir, MODEL)), false);
    assert.equal(await exists(join(dir, `${MODEL}.part`)), false);
    await assertSameFiles(dir, before);
  });

  test("an unknown repository or revision is a clear error", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const other = spawn(process.execPath, [cli, "download", "r3gpu-test/nothing-here", "--dir", freshDir()], {
      env: { ...process.env, HF_ENDPOINT: hub.origin }, stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    other.stderr!.setEncoding("utf8").on("data", (s) => (stderr += s));
    assert.equal((await once(other, "close"))[0], 1);
    assert.match(stderr, /r3gpu-test\/nothing-here: no model repository with revision "main" on http:\/\/127\.0\.0\.1:\d+/);

    const run = await download(hub, freshDir(), "--revision", "v9");
    assert.equal(run.code, 1);
    assert.match(run.stderr, new RegExp(`${REPO}: no model repository with revision "v9"`));
  });

  test("files in subfolders and empty files", async (t) => {
    const repoDir = join(work, "nested-source");
    await mkdir(join(repoDir, "onnx", "parts"), { recursive: true });
    await writeFile(join(repoDir, "config.json"), "{}\n");
    await writeFile(join(repoDir, "empty.txt"), "");
    await writeFile(join(repoDir, "onnx", "parts", "weights.bin"), randomBytes(300_000));
    const hub = await startFakeHub({ repo: REPO, dir: repoDir });
    t.after(() => hub.close());
    const dir = freshDir();
    const report = await downloadModel({ repo: REPO, dir, hubUrl: hub.origin });
    assert.deepEqual(report.files.map((f) => [f.path, f.status]),
      [["config.json", "downloaded"], ["empty.txt", "downloaded"], ["onnx/parts/weights.bin", "downloaded"]]);
    for (const f of ["config.json", "empty.txt", "onnx/parts/weights.bin"]) {
      assert.ok((await readFile(join(dir, f))).equals(await readFile(join(repoDir, f))), f);
    }
    assert.deepEqual(fetchesOf(hub.requests, "empty.txt"), [], "nothing to ask for an empty file");
  });

  test("the library reports progress over the whole repository", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const seen: HubDownloadProgress[] = [];
    const report = await downloadModel({ repo: REPO, dir: freshDir(), hubUrl: hub.origin, onProgress: (p) => seen.push(p) });
    const total = report.files.reduce((sum, f) => sum + f.size, 0);
    assert.equal(report.commit, COMMIT);
    assert.equal(report.fetchedBytes, total);
    assert.ok(seen.every((p, i) => p.totalBytes === total && (i === 0 || p.bytes >= seen[i - 1].bytes)));
    assert.equal(seen.at(-1)!.bytes, total);
    assert.deepEqual(new Set(seen.map((p) => p.file)), new Set(names));
  });
});
