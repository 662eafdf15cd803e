// Downloads a model repository from the Hugging Face hub into a plain folder (what nodeModelDir reads). Everything the
// hub sends is checked before it becomes a file. @huggingface/hub resolves the revision to a commit and asks for each
// file's size; the file list and the files' bytes are read here with plain fetch, because those are where a server
// decides how much is read: the list is read to at most MAX_PAGES pages, and a file to its listed size, no further.
// A file is written to PARTIAL/PATH, a folder no listing may name, and renamed to PATH once its size and hash (the git
// blob id, or the SHA-256 of an LFS file) match the listing, so a file in the folder is always complete. An
// interrupted run leaves the partial file, and the next run asks for the rest with an HTTP Range request, whose answer
// must say (in Content-Range) that it is that rest. The token goes only to the hub's own origin, and nothing is
// written through a symbolic link inside the folder.
import { createHash } from "node:crypto";
import { constants, createReadStream, type Stats } from "node:fs";
import { lstat, mkdir, open, rename, rm, rmdir } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileDownloadInfo, HubApiError, modelInfo } from "@huggingface/hub";

export const DEFAULT_HUB_URL = "https://huggingface.co";

/** The folder of `dir` that holds the files being downloaded. A listing that names anything in it is refused, so that
 * no listed file can be taken for a partial one (or the reverse). */
const PARTIAL = ".r3gpu-partial";
/** The hub lists up to 1000 files a page, and a model repository has tens: more pages is a server that never stops. */
const MAX_PAGES = 100;
/** A page of the hub's listing is well under 1 MiB. */
const MAX_PAGE_BYTES = 16 << 20;

export interface HubDownloadOptions {
  /** "owner/name" of a model repository. */
  repo: string;
  /** The folder to fill; created when missing. */
  dir: string;
  /** Branch, tag or commit. Default "main". */
  revision?: string;
  /** Default DEFAULT_HUB_URL. */
  hubUrl?: string;
  /** For private or gated repositories ("hf_..."); sent only to the origin of `hubUrl`. */
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
  /** "present": already complete; "resumed": continued from a partial file of `resumedFrom` bytes. */
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

/** A file entry of the hub's listing. */
interface ListedFile {
  type: "file";
  path: string;
  size: number;
  /** The git blob id of the file (of its pointer, for an LFS file). */
  oid: string;
  lfs?: { oid: string };
}

interface Source {
  repo: string;
  commit: string;
  hubUrl: string;
  get: typeof fetch;
}

export async function downloadModel(opts: HubDownloadOptions): Promise<HubDownloadReport> {
  const hubUrl = (opts.hubUrl ?? DEFAULT_HUB_URL).replace(/\/+$/, "");
  if (!URL.canParse(hubUrl)) throw new Error(`the hub's URL "${hubUrl}" is not a URL such as ${DEFAULT_HUB_URL}`);
  const get = hubFetch(hubUrl, opts.accessToken);
  const dir = resolve(opts.dir);
  const commit = await resolveCommit(opts.repo, opts.revision ?? "main", hubUrl, get);
  const entries = await listFiles({ repo: opts.repo, commit, hubUrl, get });
  if (entries.length === 0) throw new Error(`${opts.repo} at ${commit} has no files`);
  // Every path is checked before anything is written.
  const paths = entries.map((e) => localPath(dir, e.path));
  await mkdir(dir, { recursive: true });
  const totalBytes = entries.reduce((sum, e) => sum + e.size, 0);
  let bytes = 0;
  let fetchedBytes = 0;
  const files: HubFileReport[] = [];

  for (const [i, entry] of entries.entries()) {
    const path = paths[i];
    const target = join(dir, path);
    const part = join(dir, PARTIAL, path);
    const progress = (n: number) => {
      bytes += n;
      opts.onProgress?.({ file: entry.path, bytes, totalBytes });
    };
    await realFolders(dir, dirname(path), false);
    if (await isComplete(target, entry, dir)) {
      progress(entry.size);
      files.push({ path: entry.path, size: entry.size, status: "present" });
      continue;
    }
    let have: number;
    try {
      await realFolders(dir, join(PARTIAL, dirname(path)), true);
      const found = (await fileSize(part, dir)) ?? 0;
      // More bytes than the file has means the partial file belongs to some other version of it.
      have = found > entry.size ? 0 : found;
      progress(have);
      // A Range request on an empty file cannot be satisfied, so there is nothing to ask the hub for.
      if (entry.size === 0) {
        await (await openPart(part, 0)).close();
      } else {
        await fetchRest({ repo: opts.repo, commit, hubUrl, get }, entry, part, have, (n) => {
          fetchedBytes += n;
          progress(n);
        });
      }
      await verify(entry, part);
      await realFolders(dir, dirname(path), true);
      await rename(part, target);
    } finally {
      await prunePartial(dir, path);
    }
    files.push(have > 0
      ? { path: entry.path, size: entry.size, status: "resumed", resumedFrom: have }
      : { path: entry.path, size: entry.size, status: "downloaded" });
  }
  return { repo: opts.repo, commit, dir, files, fetchedBytes };
}

/**
 * fetch as every request of a download makes it: with the token only when it goes to the hub's own origin (a
 * listing's Link header may name any other), and failing with an error that names the URL and what failed, where
 * Node's fetch says "fetch failed" and keeps the reason in `cause`. Redirects (the hub sends files to its CDN) are
 * followed by fetch, which drops the Authorization header when one leaves the origin, as the Fetch standard says.
 */
function hubFetch(hubUrl: string, accessToken: string | undefined): typeof fetch {
  const origin = new URL(hubUrl).origin;
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init?.headers);
    if (accessToken !== undefined && url.origin === origin) headers.set("Authorization", `Bearer ${accessToken}`);
    try {
      return await fetch(url, { ...init, headers });
    } catch (e) {
      throw new Error(`${init?.method ?? "GET"} ${shown(url)}: ${reason(e)}`);
    }
  };
}

/** A URL for a message, without its query: a CDN's signed URL carries its credentials there. */
function shown(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** What failed, from an error of Node's fetch: the system's error (ECONNREFUSED, ENOTFOUND...) is its `cause`. */
function reason(e: unknown): string {
  const cause = (e as { cause?: unknown }).cause;
  if (!(cause instanceof Error)) return (e as Error).message;
  // When every address of a host refuses, the cause is an AggregateError of one error per address, with no message.
  if (cause instanceof AggregateError && cause.message === "") return cause.errors.map((x) => String(x?.message ?? x)).join("; ");
  return cause.message;
}

async function resolveCommit(repo: string, revision: string, hubUrl: string, get: typeof fetch): Promise<string> {
  try {
    const info = await modelInfo({ name: repo, revision, additionalFields: ["sha"], hubUrl, fetch: get });
    return info.sha;
  } catch (e) {
    if (e instanceof HubApiError && [401, 403, 404].includes(e.statusCode)) {
      throw new Error(`${repo}: no model repository with revision "${revision}" on ${hubUrl} (${e.message}); ` +
        "if it is private or gated, set HF_TOKEN to a token that may read it");
    }
    throw e;
  }
}

/**
 * The files of the repository at `commit`, a page at a time, each page linking to the next (`Link: <URL>;
 * rel="next"`) as the hub's do. The number of pages and their sizes are bounded, where @huggingface/hub's listFiles
 * follows the links for as long as a server sends them.
 */
async function listFiles({ repo, commit, hubUrl, get }: Source): Promise<ListedFile[]> {
  const files: ListedFile[] = [];
  let url = new URL(`${hubUrl}/api/models/${repo}/tree/${commit}?recursive=true&expand=false`);
  for (let page = 1; ; page++) {
    const res = await get(url, { headers: { Accept: "application/json" } });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`GET ${shown(url)}: the hub answered ${res.status}`);
    }
    const text = await readPage(res, url);
    let items: unknown;
    try {
      items = JSON.parse(text);
    } catch (e) {
      throw new Error(`GET ${shown(url)}: the file list is not JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(items)) throw new Error(`GET ${shown(url)}: the file list is not a JSON array`);
    files.push(...items.filter((item): item is ListedFile => item?.type === "file"));
    const next = /<([^>]+)>\s*;\s*rel="next"/.exec(res.headers.get("link") ?? "")?.[1];
    if (next === undefined) return files;
    if (page === MAX_PAGES) {
      throw new Error(`the file list of ${repo} at ${commit} goes on past ${MAX_PAGES} pages ` +
        `(GET ${shown(url)} links to one more)`);
    }
    url = new URL(next, url);
  }
}

async function readPage(res: Response, url: URL): Promise<string> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read().catch((e) => {
      throw new Error(`GET ${shown(url)}: ${reason(e)}`);
    });
    if (done) return Buffer.concat(chunks).toString("utf8");
    length += value.length;
    if (length > MAX_PAGE_BYTES) {
      await reader.cancel();
      throw new Error(`GET ${shown(url)}: a page of the file list longer than ${MAX_PAGE_BYTES >> 20} MiB`);
    }
    chunks.push(value);
  }
}

/** Appends the bytes of the file after the first `have` to `part`, and no more than the listing says it has. */
async function fetchRest(
  source: Source, entry: ListedFile, part: string, have: number, onBytes: (n: number) => void,
): Promise<void> {
  const { repo, commit, hubUrl, get } = source;
  // A request for the first byte tells the size the hub serves before anything is written, and on the real hub the
  // CDN URL it redirects to, which the transfer then asks directly. @huggingface/hub's downloadFile is not used for
  // the transfer: it neither checks what a resumed request gets nor stops at the size.
  const info = await fileDownloadInfo({ repo, path: entry.path, revision: commit, hubUrl, fetch: get });
  if (!info) throw new Error(`${entry.path}: listed in ${repo} at ${commit}, but ${hubUrl} has no such file`);
  if (info.size !== entry.size) {
    throw new Error(`${entry.path}: size mismatch: the file list of ${repo} says ${entry.size} bytes, ` +
      `but ${hubUrl} serves ${info.size}`);
  }
  // A run stopped between the last byte and the rename leaves nothing to ask for.
  if (have === entry.size) return;
  const url = new URL(info.url);
  const last = entry.size - 1;
  const res = await get(url, have > 0 ? { headers: { Range: `bytes=${have}-${last}` } } : {});
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`${entry.path}: GET ${shown(url)}: the hub answered ${res.status}`);
  }
  const range = res.headers.get("content-range");
  if (have > 0 && (res.status !== 206 || range !== `bytes ${have}-${last}/${entry.size}`)) {
    await res.body?.cancel();
    await rm(part);
    throw new Error(`${entry.path}: asked ${shown(url)} for bytes ${have}-${last} to resume, but it answered ${res.status} ` +
      `${range === null ? "without Content-Range" : `with Content-Range "${range}"`}; the partial file was removed, ` +
      "run it again to download it from the start");
  }
  let at = have;
  let longer = false;
  const handle = await openPart(part, have);
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (at + value.length > entry.size) {
        longer = true;
        await reader.cancel();
        break;
      }
      await handle.write(value);
      at += value.length;
      onBytes(value.length);
    }
  } catch (e) {
    throw new Error(`${entry.path}: download interrupted at ${at} of ${entry.size} bytes (${reason(e)}); ` +
      "run it again to resume");
  } finally {
    await handle.close();
  }
  if (longer) {
    await rm(part);
    throw new Error(`${entry.path}: GET ${shown(url)} sent more than the ${entry.size} bytes of the file list; ` +
      "the partial file was removed");
  }
}

/** The partial file, to append to after `have` bytes or, at 0, to start over. fileSize has refused a link there
 * already; O_NOFOLLOW closes the moment between the two. */
function openPart(part: string, have: number) {
  const { O_WRONLY, O_CREAT, O_NOFOLLOW, O_APPEND, O_TRUNC } = constants;
  return open(part, O_WRONLY | O_CREAT | O_NOFOLLOW | (have > 0 ? O_APPEND : O_TRUNC));
}

/** Where a listed file goes, relative to `dir`; the listing comes from a server, so a path that would leave `dir`, or
 * land among the partial files, is refused. */
function localPath(dir: string, path: string): string {
  const rel = typeof path === "string" ? relative(dir, resolve(dir, path)) : "";
  if (rel === "" || isAbsolute(path) || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new Error(`the file list names "${path}", which is not a path inside ${dir}`);
  }
  // Lower case, for the file systems that ignore case.
  if (rel.split(sep)[0].toLowerCase() === PARTIAL) {
    throw new Error(`the file list names "${path}", in the folder where download keeps partial files`);
  }
  return rel;
}

/** Checks that the folders of `rel` (relative to `dir`) are real folders where they exist, since a link would take
 * what is written in them elsewhere; with `create`, makes the missing ones. */
async function realFolders(dir: string, rel: string, create: boolean): Promise<void> {
  let path = dir;
  for (const name of rel === "." ? [] : rel.split(sep)) {
    path = join(path, name);
    const stats = await lstatOf(path);
    if (stats === undefined) {
      if (!create) return;
      await mkdir(path);
    } else if (stats.isSymbolicLink()) {
      throw linkError(path, dir);
    } else if (!stats.isDirectory()) {
      throw new Error(`${path} is not a folder, but the file list has files in it`);
    }
  }
}

/** The size of the file at `path`, undefined when there is none. A link there is refused rather than replaced or
 * written through: it is the user's, and so is what it points to. */
async function fileSize(path: string, dir: string): Promise<number | undefined> {
  const stats = await lstatOf(path);
  if (stats === undefined) return undefined;
  if (stats.isSymbolicLink()) throw linkError(path, dir);
  if (!stats.isFile()) throw new Error(`${path} is not a file, but the file list has a file there`);
  return stats.size;
}

async function lstatOf(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

function linkError(path: string, dir: string): Error {
  return new Error(`${path} is a symbolic link; download writes only to real folders and files in ${dir}`);
}

/** Whether `file` already is the listed file: its size, and for a file outside LFS (small: the hub keeps large files
 * in LFS) its git blob id. Checking an LFS file's SHA-256 would mean reading gigabytes on every run. */
async function isComplete(file: string, entry: ListedFile, dir: string): Promise<boolean> {
  const size = await fileSize(file, dir);
  return size === entry.size && (entry.lfs !== undefined || (await gitBlobId(file, size)) === entry.oid);
}

/** Checks a finished partial file against the listing; one that cannot become the file is removed. */
async function verify(entry: ListedFile, part: string): Promise<void> {
  const { size } = await lstat(part);
  if (size < entry.size) {
    throw new Error(`${entry.path}: the transfer ended at ${size} of ${entry.size} bytes; run it again to resume`);
  }
  const [kind, hash, listed] = entry.lfs
    ? ["SHA-256", await digest(part, createHash("sha256")), entry.lfs.oid]
    : ["git blob hash", await gitBlobId(part, size), entry.oid];
  if (hash !== listed) {
    await rm(part);
    throw new Error(`${entry.path}: ${kind} ${hash} differs from the hub's ${listed}; the file was removed, run it again`);
  }
}

/** The id git gives the file's content, which the hub lists as `oid`: SHA-1 of "blob SIZE\0" and the bytes. */
function gitBlobId(path: string, size: number): Promise<string> {
  return digest(path, createHash("sha1").update(`blob ${size}\0`));
}

async function digest(path: string, hash: ReturnType<typeof createHash>): Promise<string> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Removes the folders under PARTIAL that the partial file of `rel` leaves empty, PARTIAL too, so that a finished
 * or refused download leaves nothing behind. */
async function prunePartial(dir: string, rel: string): Promise<void> {
  for (let folder = dirname(join(PARTIAL, rel)); folder !== "."; folder = dirname(folder)) {
    try {
      await rmdir(join(dir, folder));
    } catch {
      // Not empty (another partial file is in it), or not there: what is above it stays too.
      return;
    }
  }
}
