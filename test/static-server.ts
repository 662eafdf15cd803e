// A static file server for tests: folders mounted under URL prefixes, single-range HTTP Range requests (how the
// browser page reads a model folder from a URL), on 127.0.0.1 and a free port. Every request is logged.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, resolve, sep } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};

export interface LoggedRequest {
  method: string;
  path: string;
  range?: string;
  status: number;
  /** Bytes of the file in the response body (0 for HEAD and errors). */
  bytes: number;
}

export interface StaticServer {
  origin: string;
  requests: LoggedRequest[];
  close(): Promise<void>;
}

export interface ServeOptions {
  /** Answer Range requests with the whole file (200), as some servers do. */
  ignoreRange?: boolean;
}

/** `mounts`: URL prefix ("/", "/model/") -> folder. The longest matching prefix serves a request. */
export async function serveStatic(mounts: Record<string, string>, opts: ServeOptions = {}): Promise<StaticServer> {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const requests: LoggedRequest[] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<LoggedRequest> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const log: LoggedRequest = { method: req.method ?? "", path: url.pathname, range: req.headers.range, status: 404, bytes: 0 };
    const fail = (status: number) => {
      log.status = res.statusCode = status;
      res.end();
      return log;
    };
    if (req.method !== "GET" && req.method !== "HEAD") return fail(405);
    const prefix = prefixes.find((p) => url.pathname.startsWith(p));
    if (prefix === undefined) return fail(404);
    const root = resolve(mounts[prefix]);
    let rel = decodeURIComponent(url.pathname.slice(prefix.length));
    if (rel === "" || rel.endsWith("/")) rel += "index.html";
    const file = resolve(root, rel);
    if (!file.startsWith(root + sep)) return fail(403);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return fail(404);

    const size = info.size;
    let start = 0;
    let end = size - 1;
    res.setHeader("Content-Type", TYPES[extname(file)] ?? "application/octet-stream");
    if (!opts.ignoreRange) res.setHeader("Accept-Ranges", "bytes");
    const range = opts.ignoreRange ? undefined : req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range);
      if (m && m[1] !== "") {
        start = Number(m[1]);
        end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
      } else if (m && m[2] !== "") {
        start = Math.max(0, size - Number(m[2]));
      }
      if (!m || (m[1] === "" && m[2] === "") || start > end || start >= size) {
        res.setHeader("Content-Range", `bytes */${size}`);
        return fail(416);
      }
      res.setHeader("Content-Range", `bytes ${start}-${end}/${size}`);
      log.status = res.statusCode = 206;
    } else {
      log.status = res.statusCode = 200;
    }
    const length = size === 0 ? 0 : end - start + 1;
    res.setHeader("Content-Length", length);
    if (req.method === "HEAD" || length === 0) {
      res.end();
      return log;
    }
    log.bytes = length;
    await new Promise<void>((done, failed) => {
      createReadStream(file, { start, end }).on("error", failed).pipe(res).on("finish", done).on("close", done);
    });
    return log;
  };

  const server = createServer((req, res) => {
    handle(req, res).then(
      (log) => requests.push(log),
      (e) => {
        requests.push({ method: req.method ?? "", path: req.url ?? "", status: 500, bytes: 0 });
        if (!res.headersSent) res.statusCode = 500;
        res.end(String(e));
      },
    );
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((done) => {
      server.closeAllConnections();
      server.close(() => done());
    }),
  };
}

