// `r3gpu download` against a local stand-in for the Hugging Face hub (test/hub-server.ts) that serves the shared tiny
// model: a full download, resumption after a dropped connection and after a killed process, size and hash checks;
// then the hub turned hostile (more bytes than listed, other bytes, bad resumes, endless listings, other origins) and
// links in the target folder. No request leaves 127.0.0.1.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { downloadModel, type HubDownloadProgress } from "../src/hub/download.ts";
import { closedOrigin, COMMIT, startFakeHub, type FakeHub, type HubRequest } from "./hub-server.ts";
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
/** Where the download keeps a file until it is complete. */
const partialOf = (dir: string, file: string) => join(dir, ".r3gpu-partial", file);
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
    const partSize = (await stat(partialOf(dir, MODEL))).size;
    assert.ok(partSize > 0 && partSize <= 5 << 20, `the partial file holds ${partSize} bytes`);
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
    const partSize = (await stat(partialOf(dir, MODEL))).size;
    assert.ok(partSize > 0 && partSize < modelSize, `the partial file holds ${partSize} bytes`);

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
    assert.equal(await exists(partialOf(dir, MODEL)), false);
    await assertSameFiles(dir, before);
    assert.deepEqual((await readdir(dir)).sort(), before, "nothing else is left");
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

  test("a partial file that is already complete becomes the file without another transfer", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const file = "config.json";
    const data = await readFile(join(source, file));
    await mkdir(join(dir, ".r3gpu-partial"), { recursive: true });
    await writeFile(partialOf(dir, file), data);
    const report = await downloadModel({ repo: REPO, dir, hubUrl: hub.origin });
    assert.deepEqual(report.files[0], { path: file, size: data.length, status: "resumed", resumedFrom: data.length });
    assert.deepEqual(fetchesOf(hub.requests, file).map((r) => r.range), ["bytes=0-0"]);
    assert.deepEqual((await readdir(dir)).sort(), names);
    await assertSameFiles(dir);
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

/** A repository of the given files (path -> content) in a fresh folder. */
async function sourceOf(files: Record<string, string | Buffer>): Promise<string> {
  const root = freshDir();
  for (const [path, data] of Object.entries(files)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), data);
  }
  return root;
}

const gitBlob = (data: Buffer) => createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");

describe("r3gpu download from a hostile hub", () => {
  test("a body longer than the listed size is cut off there, and nothing of it is kept", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const size = (await stat(join(source, "config.json"))).size;
    hub.oversize.set("config.json", 64 << 20);
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `config.json: GET ${hub.origin}${resolveUrl("config.json")} sent more than the ${size} bytes of the file ` +
        "list; the partial file was removed",
    });
    assert.deepEqual(await readdir(dir), []);
    const sent = hub.sent.get("config.json")!;
    assert.ok(sent < 16 << 20, `the download hung up after ${sent} of the 64 MiB sent`);
  });

  // The timeout turns a downloader that follows the pages forever into a failure.
  test("a listing that does not end is refused: endless Link pages, an endless page", { timeout: 60_000 }, async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const tree = `${hub.origin}/api/models/${REPO}/tree/${COMMIT}`;
    const pages = () => hub.requests.filter((r) => r.url.startsWith(`/api/models/${REPO}/tree/`)).length;
    hub.endlessPages = true;
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `the file list of ${REPO} at ${COMMIT} goes on past 100 pages (GET ${tree} links to one more)`,
    });
    assert.equal(pages(), 100);

    hub.endlessPages = false;
    hub.pagePadding = 17 << 20;
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `GET ${tree}: a page of the file list longer than 16 MiB`,
    });
    assert.equal(pages(), 101);
    assert.equal(await exists(dir), false, "nothing is written before the listing is read");
  });

  test("a small file with the listed size and other bytes is refused by its git blob hash, and replaced", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const real = await readFile(join(source, "config.json"));
    const other = Buffer.alloc(real.length, "x");
    hub.served.set("config.json", other);
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `config.json: git blob hash ${gitBlob(other)} differs from the hub's ${gitBlob(real)}; the file was ` +
        "removed, run it again",
    });
    assert.deepEqual(await readdir(dir), []);

    // The same bytes left in the folder (by an earlier version of the downloader, say) are not taken as the file.
    hub.served.clear();
    await writeFile(join(dir, "config.json"), other);
    const report = await downloadModel({ repo: REPO, dir, hubUrl: hub.origin });
    assert.deepEqual(report.files.map((f) => f.status), names.map(() => "downloaded"));
    await assertSameFiles(dir);
  });

  test("a resume answered at another offset or without Content-Range is refused, and the next run starts over", async (t) => {
    const hub = await startHub();
    t.after(() => hub.close());
    const dir = freshDir();
    const file = "tokenizer.json";
    const size = (await stat(join(source, file))).size;
    const url = `${hub.origin}${resolveUrl(file)}`;
    const interrupt = async () => {
      hub.cutAfter.set(file, 1 << 20);
      await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), /tokenizer\.json: download interrupted/);
      return (await stat(partialOf(dir, file))).size;
    };

    let have = await interrupt();
    hub.badResume.set(file, "wrong-offset");
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `${file}: asked ${url} for bytes ${have}-${size - 1} to resume, but it answered 206 with Content-Range ` +
        `"bytes 0-${size - 1}/${size}"; the partial file was removed, run it again to download it from the start`,
    });
    assert.equal(await exists(partialOf(dir, file)), false);

    have = await interrupt();
    hub.badResume.set(file, "no-content-range");
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `${file}: asked ${url} for bytes ${have}-${size - 1} to resume, but it answered 206 without ` +
        "Content-Range; the partial file was removed, run it again to download it from the start",
    });
    assert.equal(await exists(partialOf(dir, file)), false);

    hub.badResume.clear();
    const from = hub.requests.length;
    await downloadModel({ repo: REPO, dir, hubUrl: hub.origin });
    assert.deepEqual(fetchesOf(hub.requests.slice(from), file).map((r) => [r.range, r.status]),
      [["bytes=0-0", 206], [undefined, 200]]);
    await assertSameFiles(dir);
  });

  test("a listed X.part is a file like any other; no listed file can be taken for a partial one", async (t) => {
    const files = { "config.json": '{"model_type": "qwen2"}\n', "config.json.part": '{"x": 1}\n' };
    // X.part first, so that it is complete before X starts.
    const partFirst = (a: string, b: string) => Number(b.endsWith(".part")) - Number(a.endsWith(".part"));
    const hub = await startFakeHub({ repo: REPO, dir: await sourceOf(files), order: partFirst });
    t.after(() => hub.close());
    const dir = freshDir();
    const report = await downloadModel({ repo: REPO, dir, hubUrl: hub.origin });
    assert.deepEqual(report.files.map((f) => [f.path, f.status]),
      [["config.json.part", "downloaded"], ["config.json", "downloaded"]]);
    for (const [path, data] of Object.entries(files)) assert.equal(await readFile(join(dir, path), "utf8"), data, path);
    assert.deepEqual((await readdir(dir)).sort(), ["config.json", "config.json.part"]);

    const reserved = await startFakeHub({ repo: REPO, dir: await sourceOf({ ".r3gpu-partial/config.json": "{}\n" }) });
    t.after(() => reserved.close());
    const other = freshDir();
    await assert.rejects(downloadModel({ repo: REPO, dir: other, hubUrl: reserved.origin }), {
      message: `the file list names ".r3gpu-partial/config.json", in the folder where download keeps partial files`,
    });
    assert.equal(await exists(other), false);
  });

  test("the token goes only to the hub's origin, not to another that a Link header or a redirect names", async (t) => {
    const hub = await startHub();
    const other = await startHub();
    t.after(() => Promise.all([hub.close(), other.close()]));
    hub.pageSize = 3;
    hub.nextOrigin = other.origin;
    hub.redirectTo = other.origin;
    const dir = freshDir();
    await downloadModel({ repo: REPO, dir, hubUrl: hub.origin, accessToken: "hf_secret" });
    await assertSameFiles(dir);
    assert.deepEqual(new Set(hub.requests.map((r) => r.authorization)), new Set(["Bearer hf_secret"]));
    const lfs = names.filter((f) => f.endsWith(".safetensors"));
    assert.deepEqual(other.requests.map((r) => [r.url, r.authorization]), [
      [`/api/models/${REPO}/tree/${COMMIT}?recursive=true&expand=false&cursor=3`, undefined],
      ...lfs.flatMap((f) => [[resolveUrl(f), undefined], [resolveUrl(f), undefined]]),
    ]);
  });

  test("a network failure names the URL and its cause; a hub URL that is not one is named too", async () => {
    await assert.rejects(downloadModel({ repo: REPO, dir: freshDir(), hubUrl: "not a url" }), {
      message: `the hub's URL "not a url" is not a URL such as https://huggingface.co`,
    });
    const origin = await closedOrigin();
    const child = spawn(process.execPath, [cli, "download", REPO, "--dir", freshDir()], {
      env: { ...process.env, HF_ENDPOINT: origin }, stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (s) => (stderr += s));
    assert.equal((await once(child, "close"))[0], 1);
    assert.equal(stderr.replace(/^Warning: .*\n/gm, ""),
      `r3gpu download: GET ${origin}/api/models/${REPO}/revision/main: connect ECONNREFUSED ${origin.slice("http://".length)}\n`);
  });
});

describe("r3gpu download and links in the target folder", () => {
  const files = { "config.json": '{"model_type": "qwen2"}\n', "onnx/parts/weights.bin": randomBytes(70_000) };
  const outside = async () => {
    const root = freshDir();
    await mkdir(root);
    return root;
  };

  test("a linked folder on the way to a file is not written through", async (t) => {
    const hub = await startFakeHub({ repo: REPO, dir: await sourceOf(files) });
    t.after(() => hub.close());
    const dir = freshDir();
    const away = await outside();
    await mkdir(dir);
    await symlink(away, join(dir, "onnx"));
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `${join(dir, "onnx")} is a symbolic link; download writes only to real folders and files in ${dir}`,
    });
    assert.deepEqual(await readdir(away), []);
  });

  test("a linked file in the way is left alone, and so is what it points to", async (t) => {
    const hub = await startFakeHub({ repo: REPO, dir: await sourceOf(files) });
    t.after(() => hub.close());
    const away = await outside();
    await writeFile(join(away, "mine.json"), "mine\n");
    const dir = freshDir();
    await mkdir(dir);
    await symlink(join(away, "mine.json"), join(dir, "config.json"));
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `${join(dir, "config.json")} is a symbolic link; download writes only to real folders and files in ${dir}`,
    });
    assert.equal(await readlink(join(dir, "config.json")), join(away, "mine.json"));
    assert.equal(await readFile(join(away, "mine.json"), "utf8"), "mine\n");
  });

  test("a link where partial files go is not written through; a link named like an old partial file is ignored", async (t) => {
    const hub = await startFakeHub({ repo: REPO, dir: await sourceOf(files) });
    t.after(() => hub.close());
    const away = await outside();
    const dir = freshDir();
    await mkdir(dir);
    await symlink(away, join(dir, ".r3gpu-partial"));
    await assert.rejects(downloadModel({ repo: REPO, dir, hubUrl: hub.origin }), {
      message: `${join(dir, ".r3gpu-partial")} is a symbolic link; download writes only to real folders and files in ${dir}`,
    });
    assert.deepEqual(await readdir(away), []);

    const victim = join(away, "victim.txt");
    await writeFile(victim, "keep\n");
    const other = freshDir();
    await mkdir(other);
    await symlink(victim, join(other, "config.json.part"));
    await downloadModel({ repo: REPO, dir: other, hubUrl: hub.origin });
    assert.equal(await readFile(victim, "utf8"), "keep\n");
    assert.ok((await lstat(join(other, "config.json.part"))).isSymbolicLink());
    assert.equal(await readFile(join(other, "config.json"), "utf8"), files["config.json"]);
    assert.deepEqual((await readdir(other)).sort(), ["config.json", "config.json.part", "onnx"]);
  });
});
