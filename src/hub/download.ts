// Downloads a model repository from the Hugging Face hub into a plain folder (what nodeModelDir reads), with
// @huggingface/hub: the commit a revision points to, its file list with sizes (and SHA-256 for LFS files), and each
// file through the hub's resolve URL. A file is written to FILE.part and renamed once its size (and hash) check
// out, so a final file is always complete; an interrupted run leaves the .part, and the next run asks for the rest
// with an HTTP Range request and skips the files already complete.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { downloadFile, HubApiError, listFiles, modelInfo, type ListFileEntry } from "@huggingface/hub";

export const DEFAULT_HUB_URL = "https://huggingface.co";

export interface HubDownloadOptions {
  /** "owner/name" of a model repository. */
  repo: string;
  /** The folder to fill; created when missing. */
  dir: string;
  /** Branch, tag or commit. Default "main". */
  revision?: string;
  /** Default DEFAULT_HUB_URL. */
  hubUrl?: string;
  /** For private or gated repositories ("hf_..."). */
  accessToken?: string;
  onProgress?: (p: HubDownloadProgress) => void;
}

export interface HubDownloadProgress {
  /** The file being fetched. */
  file: string;
  /** Bytes of the whole repository on disk so far, complete files and partial ones. */
  bytes: number;
  totalBytes: number;
}

export interface HubFileReport {
  path: string;
  size: number;
  /** "present": already complete; "resumed": continued from a .part file of `resumedFrom` bytes. */
  status: "downloaded" | "resumed" | "present";
  resumedFrom?: number;
}

export interface HubDownloadReport {
  repo: string;
  /** The commit the revision pointed to; every file comes from it. */
  commit: string;
  dir: string;
  files: HubFileReport[];
  /** Bytes fetched by this run. */
  fetchedBytes: number;
}

export async function downloadModel(opts: HubDownloadOptions): Promise<HubDownloadReport> {
  const hubUrl = (opts.hubUrl ?? DEFAULT_HUB_URL).replace(/\/+$/, "");
  const auth = { hubUrl, accessToken: opts.accessToken };
  const dir = resolve(opts.dir);
  const commit = await resolveCommit(opts.repo, opts.revision ?? "main", auth);

  const entries: ListFileEntry[] = [];
  for await (const entry of listFiles({ repo: opts.repo, revision: commit, recursive: true, ...auth })) {
    if (entry.type === "file") entries.push(entry);
  }
  if (entries.length === 0) throw new Error(`${opts.repo} at ${commit} has no files`);
  const totalBytes = entries.reduce((sum, e) => sum + e.size, 0);
  let bytes = 0;
  let fetchedBytes = 0;
  const files: HubFileReport[] = [];

  for (const entry of entries) {
    const target = localPath(dir, entry.path);
    const progress = (n: number) => {
      bytes += n;
      opts.onProgress?.({ file: entry.path, bytes, totalBytes });
    };
    if ((await sizeOf(target)) === entry.size) {
      progress(entry.size);
      files.push({ path: entry.path, size: entry.size, status: "present" });
      continue;
    }
    await mkdir(dirname(target), { recursive: true });
    const part = `${target}.part`;
    const found = (await sizeOf(part)) ?? 0;
    // More bytes than the file has means the .part belongs to some other version of it.
    const have = found > entry.size ? 0 : found;
    progress(have);
    // A Range request on an empty file cannot be satisfied, so there is nothing to ask the hub for.
    if (entry.size === 0) {
      await writeFile(part, "");
    } else {
      await fetchRest({ repo: opts.repo, commit, ...auth }, entry, part, have, (n) => {
        fetchedBytes += n;
        progress(n);
      });
    }
    await verify(entry, part);
    await rename(part, target);
    files.push(have > 0
      ? { path: entry.path, size: entry.size, status: "resumed", resumedFrom: have }
      : { path: entry.path, size: entry.size, status: "downloaded" });
  }
  return { repo: opts.repo, commit, dir, files, fetchedBytes };
}

/** Appends the bytes of the file after the first `have` to `part`. */
async function fetchRest(
  source: { repo: string; commit: string; hubUrl: string; accessToken?: string }, entry: ListFileEntry, part: string,
  have: number, onBytes: (n: number) => void,
): Promise<void> {
  const { repo, commit, hubUrl, accessToken } = source;
  // Plain HTTP from the resolve URL (which redirects to the CDN on the real hub) rather than Xet: it is what a Range
  // request resumes, and every file the hub serves supports it.
  const blob = await downloadFile({ repo, path: entry.path, revision: commit, hubUrl, accessToken, xet: false });
  if (!blob) throw new Error(`${entry.path}: listed in ${repo} at ${commit}, but ${hubUrl} has no such file`);
  if (blob.size !== entry.size) {
    throw new Error(`${entry.path}: size mismatch: the file list of ${repo} says ${entry.size} bytes, but ${hubUrl} serves ${blob.size}`);
  }
  if (have === entry.size) return;
  let fetched = 0;
  const handle = await open(part, have > 0 ? "a" : "w");
  try {
    const reader = blob.slice(have).stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await handle.write(value);
      fetched += value.length;
      onBytes(value.length);
    }
  } catch (e) {
    throw new Error(`${entry.path}: download interrupted at ${have + fetched} of ${entry.size} bytes ` +
      `(${e instanceof Error ? e.message : String(e)}); run it again to resume`);
  } finally {
    await handle.close();
  }
}

async function resolveCommit(repo: string, revision: string, auth: { hubUrl: string; accessToken?: string }): Promise<string> {
  try {
    const info = await modelInfo({ name: repo, revision, additionalFields: ["sha"], ...auth });
    return info.sha;
  } catch (e) {
    if (e instanceof HubApiError && [401, 403, 404].includes(e.statusCode)) {
      throw new Error(`${repo}: no model repository with revision "${revision}" on ${auth.hubUrl} (${e.message}); ` +
        "if it is private or gated, set HF_TOKEN to a token that may read it");
    }
    throw e;
  }
}

/** Where a listed file goes; the listing comes from a server, so a path that would leave `dir` is refused. */
function localPath(dir: string, path: string): string {
  const target = resolve(dir, path);
  const rel = relative(dir, target);
  if (path === "" || isAbsolute(path) || rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new Error(`the file list names "${path}", which is not a path inside ${dir}`);
  }
  return target;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** Checks a finished .part against the listing; a .part that cannot become the file is removed. */
async function verify(entry: ListFileEntry, part: string): Promise<void> {
  const size = (await sizeOf(part)) ?? 0;
  if (size < entry.size) {
    throw new Error(`${entry.path}: the transfer ended at ${size} of ${entry.size} bytes; run it again to resume`);
  }
  if (size > entry.size) {
    await rm(part);
    throw new Error(`${entry.path}: size mismatch: received ${size} bytes, more than the ${entry.size} listed ` +
      "(the server may have ignored the Range request); the partial file was removed, run it again");
  }
  if (entry.lfs) {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
    const sha256 = hash.digest("hex");
    if (sha256 !== entry.lfs.oid) {
      await rm(part);
      throw new Error(`${entry.path}: SHA-256 ${sha256} differs from the hub's ${entry.lfs.oid}; the file was ` +
        "removed, run it again");
    }
  }
}
