// A stand-in for the Hugging Face hub on 127.0.0.1: one model repository, the files of a folder, served at the hub's
// URLs:
//   GET /api/models/{repo}/revision/{rev}            model info; its "sha" is the commit the revision points to
//   GET /api/models/{repo}/tree/{rev}?recursive=...  the folders and files: [{type, path, size, oid, lfs?: {oid, size}}],
//                                                    a page from entry `cursor` on (0 by default)
//   GET|HEAD /{repo}/resolve/{rev}/{path}            the file, honouring single "Range: bytes=a-b" / "bytes=a-"
// {rev} is "main" or the commit. Errors carry X-Error-Code as the hub's do (RepoNotFound, RevisionNotFound,
// EntryNotFound). Every request is logged, and a test can make the server lie about sizes or hashes, cut a
// transfer, or send a file slowly, and behave as a hostile server would: send more bytes than it listed, other
// bytes than it listed, a resumed range from the wrong offset, a listing that never ends, pages linked to another
// origin, files redirected to another origin.
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
  /** The Authorization header it came with. */
  authorization?: string;
  status: number;
}

export interface FakeHubOptions {
  repo: string;
  dir: string;
  /** Files listed as Git LFS files, with their SHA-256. */
  lfs?: (path: string) => boolean;
  /** The order of the listing; by default by path, as the hub lists. */
  order?: (a: string, b: string) => number;
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
  /** Bytes sent instead of the file's own; the listing still describes the file's own. */
  served: Map<string, Buffer>;
  /** A body other than the 1-byte size probe goes on with zeros to this many bytes (without Content-Length). */
  oversize: Map<string, number>;
  /** How a request for the file's bytes from an offset above 0 is answered: from offset 0 (saying so in
   * Content-Range), or with the right bytes and no Content-Range. */
  badResume: Map<string, "wrong-offset" | "no-content-range">;
  /** Entries per page of the listing, each page linking to the next (`Link: <...>; rel="next"`); all in one page when
   * unset. */
  pageSize?: number;
  /** The origin the Link headers name; this server's by default. */
  nextOrigin?: string;
  /** Every page links to a next one, past the end of the listing too. */
  endlessPages: boolean;
  /** Spaces after the JSON of each page of the listing. */
  pagePadding: number;
  /** LFS files are answered with a redirect to the same path at this origin, as the hub sends them to its CDN. */
  redirectTo?: string;
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
  // Hashed once: the listing and every response name them, and the tests ask for many.
  const hashes = new Map([...files].map(([path, data]) => [path, {
    // The git blob id, as the hub gives it.
    oid: createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex"),
    sha256: createHash("sha256").update(data).digest("hex"),
  }]));
  const hub: FakeHub = {
    origin: "",
    requests: [],
    listedSize: new Map(),
    listedSha256: new Map(),
    cutAfter: new Map(),
    delayMs: new Map(),
    sent: new Map(),
    served: new Map(),
    oversize: new Map(),
    badResume: new Map(),
    endlessPages: false,
    pagePadding: 0,
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
      const { oid, sha256: own } = hashes.get(path)!;
      const sha256 = hub.listedSha256.get(path) ?? own;
      entries.push({ type: "file", oid, size, path, ...(opts.lfs?.(path) && { lfs: { oid: sha256, size, pointerSize: 134 } }) });
    }
    const order = opts.order ?? ((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return entries.sort((a, b) => order(a.path, b.path));
  };

  const json = (res: ServerResponse, status: number, body: unknown, errorCode?: string) => {
    res.writeHead(status, { "Content-Type": "application/json", ...(errorCode && { "X-Error-Code": errorCode }) });
    res.end(JSON.stringify(body));
  };

  /** The page of the listing that starts at entry `cursor`, with the Link to the next one. */
  const page = (res: ServerResponse, rev: string, cursor: number, log: HubRequest) => {
    const all = listing();
    const size = hub.pageSize ?? Math.max(all.length, 1);
    const next = cursor + size;
    const link = `<${hub.nextOrigin ?? hub.origin}/api/models/${opts.repo}/tree/${rev}?recursive=true&expand=false` +
      `&cursor=${next}>; rel="next"`;
    log.status = 200;
    res.writeHead(200, {
      "Content-Type": "application/json", ...((hub.endlessPages || next < all.length) && { Link: link }),
    });
    res.end(JSON.stringify(all.slice(cursor, next)) + " ".repeat(hub.pagePadding));
  };

  async function sendFile(req: IncomingMessage, res: ServerResponse, path: string, data: Buffer, log: HubRequest): Promise<void> {
    data = hub.served.get(path) ?? data;
    const headers = {
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      ETag: `"${hashes.get(path)!.sha256}"`,
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
    const bad = start > 0 ? hub.badResume.get(path) : undefined;
    if (bad === "wrong-offset") start = 0;
    const probe = range === "bytes=0-0";
    const oversize = probe ? undefined : hub.oversize.get(path);
    res.writeHead(status, {
      ...headers,
      ...(oversize === undefined && { "Content-Length": end - start + 1 }),
      ...(status === 206 && bad !== "no-content-range" && { "Content-Range": `bytes ${start}-${end}/${data.length}` }),
    });
    log.status = status;
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const bytes = data.subarray(start, end + 1);
    const body = oversize === undefined ? bytes : Buffer.concat([bytes, Buffer.alloc(oversize - bytes.length)]);
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
    const log: HubRequest = {
      method: req.method ?? "", url, ...(req.headers.range && { range: req.headers.range }),
      ...(req.headers.authorization && { authorization: req.headers.authorization }), status: 0,
    };
    hub.requests.push(log);
    const reply = (status: number, body: unknown, code?: string) => {
      log.status = status;
      json(res, status, body, code);
    };
    const { pathname, searchParams } = new URL(url, "http://hub");
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
      if (kind === "tree") return page(res, rev, Number(searchParams.get("cursor") ?? 0), log);
    } else if (pathname.startsWith(resolvePrefix)) {
      const [rev, ...rest] = pathname.slice(resolvePrefix.length).split("/");
      const path = decodeURIComponent(rest.join("/"));
      if (!knownRevision(decodeURIComponent(rev))) return reply(404, { error: "Revision Not Found" }, "RevisionNotFound");
      const data = files.get(path);
      if (!data) return reply(404, { error: "Entry not found" }, "EntryNotFound");
      if (hub.redirectTo !== undefined && opts.lfs?.(path)) {
        log.status = 302;
        res.writeHead(302, { Location: `${hub.redirectTo}${pathname}` });
        res.end();
        return;
      }
      sendFile(req, res, path, data, log).catch(() => res.destroy());
      return;
    }
    reply(404, { error: "Repository not found" }, "RepoNotFound");
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  hub.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return hub;
}

/** An origin where nothing listens: the port of a server that has been closed. */
export async function closedOrigin(): Promise<string> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((done) => server.close(() => done()));
  return `http://127.0.0.1:${port}`;
}
