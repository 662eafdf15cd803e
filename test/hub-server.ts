// A stand-in for the Hugging Face hub on 127.0.0.1: one model repository, the files of a folder, served at the URLs
// @huggingface/hub asks for:
//   GET /api/models/{repo}/revision/{rev}            model info; its "sha" is the commit the revision points to
//   GET /api/models/{repo}/tree/{rev}?recursive=...  the folders and files: [{type, path, size, oid, lfs?: {oid, size}}]
//   GET|HEAD /{repo}/resolve/{rev}/{path}            the file, honouring single "Range: bytes=a-b" / "bytes=a-"
// {rev} is "main" or the commit. Errors carry X-Error-Code as the hub's do (RepoNotFound, RevisionNotFound,
// EntryNotFound). Every request is logged, and a test can make the server lie about sizes or hashes, cut a
// transfer, or send a file slowly.
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, relative, sep } from "node:path";

export const COMMIT = "0123456789abcdef0123456789abcdef01234567";

export interface HubRequest {
  method: string;
  /** Path and query, as requested. */
  url: string;
  range?: string;
  status: number;
}

export interface FakeHubOptions {
  repo: string;
  dir: string;
  /** Files listed as Git LFS files, with their SHA-256. */
  lfs?: (path: string) => boolean;
}

export interface FakeHub {
  origin: string;
  requests: HubRequest[];
  /** Listed sizes that differ from the files' own. */
  listedSize: Map<string, number>;
  /** Listed LFS SHA-256 values that differ from the files' own. */
  listedSha256: Map<string, string>;
  /** After this many bytes of the file's next body, the connection is destroyed (once). */
  cutAfter: Map<string, number>;
  /** The file's bodies go out in 64 KiB pieces this many milliseconds apart. */
  delayMs: Map<string, number>;
  /** Bytes of each file sent in response bodies so far. */
  sent: Map<string, number>;
  close(): Promise<void>;
}

const PIECE = 64 << 10;

export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const files = new Map<string, Buffer>();
  const folders: string[] = [];
  for (const entry of await readdir(opts.dir, { recursive: true, withFileTypes: true })) {
    const path = relative(opts.dir, join(entry.parentPath, entry.name)).split(sep).join("/");
    if (entry.isDirectory()) folders.push(path);
    else files.set(path, await readFile(join(opts.dir, path)));
  }
  const hub: FakeHub = {
    origin: "",
    requests: [],
    listedSize: new Map(),
    listedSha256: new Map(),
    cutAfter: new Map(),
    delayMs: new Map(),
    sent: new Map(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };

  interface TreeEntry {
    type: "file" | "directory";
    oid: string;
    size: number;
    path: string;
    lfs?: { oid: string; size: number; pointerSize: number };
  }
  const listing = (): TreeEntry[] => {
    const entries: TreeEntry[] = folders.map((path) => ({ type: "directory", oid: "0".repeat(40), size: 0, path }));
    for (const [path, data] of files) {
      const size = hub.listedSize.get(path) ?? data.length;
      // The git blob id, as the hub gives it.
      const oid = createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
      const sha256 = hub.listedSha256.get(path) ?? createHash("sha256").update(data).digest("hex");
      entries.push({ type: "file", oid, size, path, ...(opts.lfs?.(path) && { lfs: { oid: sha256, size, pointerSize: 134 } }) });
    }
    return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  };

  const json = (res: ServerResponse, status: number, body: unknown, errorCode?: string) => {
    res.writeHead(status, { "Content-Type": "application/json", ...(errorCode && { "X-Error-Code": errorCode }) });
    res.end(JSON.stringify(body));
  };

  async function sendFile(req: IncomingMessage, res: ServerResponse, path: string, data: Buffer, log: HubRequest): Promise<void> {
    const headers = {
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      ETag: `"${createHash("sha256").update(data).digest("hex")}"`,
      "X-Repo-Commit": COMMIT,
    };
    let start = 0;
    let end = data.length - 1;
    let status = 200;
    const range = req.headers.range;
    if (range !== undefined) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m || Number(m[1]) >= data.length) {
        log.status = 416;
        res.writeHead(416, { ...headers, "Content-Range": `bytes */${data.length}` });
        res.end();
        return;
      }
      start = Number(m[1]);
      end = m[2] === "" ? data.length - 1 : Math.min(Number(m[2]), data.length - 1);
      status = 206;
    }
    res.writeHead(status, {
      ...headers,
      "Content-Length": end - start + 1,
      ...(status === 206 && { "Content-Range": `bytes ${start}-${end}/${data.length}` }),
    });
    log.status = status;
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const body = data.subarray(start, end + 1);
    const cut = hub.cutAfter.get(path);
    // The 1-byte probe for the size passes; the cut is for a real transfer.
    const limit = cut !== undefined && body.length > cut ? cut : body.length;
    if (limit < body.length) hub.cutAfter.delete(path);
    for (let at = 0; at < limit; at += PIECE) {
      const piece = body.subarray(at, Math.min(at + PIECE, limit));
      const delay = hub.delayMs.get(path);
      if (delay) await new Promise((done) => setTimeout(done, delay));
      if (res.destroyed) return;
      await new Promise<void>((done) => res.write(piece, () => done()));
      hub.sent.set(path, (hub.sent.get(path) ?? 0) + piece.length);
    }
    if (limit < body.length) res.destroy();
    else res.end();
  }

  const server = createServer((req, res) => {
    const url = req.url ?? "/";
    const log: HubRequest = { method: req.method ?? "", url, ...(req.headers.range && { range: req.headers.range }), status: 0 };
    hub.requests.push(log);
    const reply = (status: number, body: unknown, code?: string) => {
      log.status = status;
      json(res, status, body, code);
    };
    const { pathname } = new URL(url, "http://hub");
    const api = `/api/models/${opts.repo}/`;
    const resolvePrefix = `/${opts.repo}/resolve/`;
    const knownRevision = (rev: string) => rev === "main" || rev === COMMIT;

    if (pathname.startsWith(api)) {
      const [kind, rev] = pathname.slice(api.length).split("/");
      if (!knownRevision(decodeURIComponent(rev ?? ""))) return reply(404, { error: "Revision Not Found" }, "RevisionNotFound");
      if (kind === "revision") {
        return reply(200, {
          _id: "0000000000000000000000aa", id: opts.repo, sha: COMMIT, private: false, gated: false, downloads: 0, likes: 0,
          lastModified: "2025-01-01T00:00:00.000Z", pipeline_tag: "text-generation",
        });
      }
      if (kind === "tree") return reply(200, listing());
    } else if (pathname.startsWith(resolvePrefix)) {
      const [rev, ...rest] = pathname.slice(resolvePrefix.length).split("/");
      const path = decodeURIComponent(rest.join("/"));
      if (!knownRevision(decodeURIComponent(rev))) return reply(404, { error: "Revision Not Found" }, "RevisionNotFound");
      const data = files.get(path);
      if (!data) return reply(404, { error: "Entry not found" }, "EntryNotFound");
      sendFile(req, res, path, data, log).catch(() => res.destroy());
      return;
    }
    reply(404, { error: "Repository not found" }, "RepoNotFound");
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  hub.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return hub;
}
